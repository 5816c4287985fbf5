// The fakes themselves (tests/fakes): each behaviour the worker will be written against is the
// real server's, as docs/integrations.md §E describes it with its upstream source.
#include "fake_backends.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace devicegate::fakes;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

// Any base64 text will do: ThingsBoard does not look inside the certificate (formatCertData).
std::string pem(const std::string& body) { return "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n"; }

struct tb_client {
    fake_thingsboard& tb;
    httplib::Client http;
    std::string token;

    explicit tb_client(fake_thingsboard& server) : tb(server), http(server.url()) {}
    httplib::Result login(const std::string& password = "tenant") {
        return http.Post("/api/auth/login", json{{"username", "tenant@thingsboard.org"}, {"password", password}}.dump(), "application/json");
    }
    void sign_in() {
        auto r = login();
        REQUIRE(r);
        REQUIRE(r->status == 200);
        token = json::parse(r->body)["token"].get<std::string>();
    }
    httplib::Headers auth(const std::string& accept = "application/json") const {
        return {{"X-Authorization", "Bearer " + token}, {"Accept", accept}};
    }
    httplib::Result post(const std::string& path, const json& body) { return http.Post(path, auth(), body.dump(), "application/json"); }
    httplib::Result get(const std::string& path) { return http.Get(path, auth()); }
    /// Creates a device; returns its JSON.
    json create(const std::string& name, const std::string& cert_body, json extra = json::object()) {
        json device{{"name", name}};
        device.update(extra);
        auto r = post("/api/device-with-credentials",
                      {{"device", device}, {"credentials", {{"credentialsType", "X509_CERTIFICATE"}, {"credentialsValue", pem(cert_body)}}}});
        REQUIRE(r);
        INFO(r->body);
        REQUIRE(r->status == 200);
        return json::parse(r->body);
    }
};

struct started_tb {
    fake_thingsboard tb;
    explicit started_tb(thingsboard_options options) : tb(std::move(options)) { tb.start("127.0.0.1", 0); }
};

/// A started fake ThingsBoard (the base: it listens before the client below is made), a
/// signed-in client and one device, "dev-1".
struct tb_with_device : started_tb {
    tb_client c{tb};
    std::string id;
    explicit tb_with_device(thingsboard_options options = {}) : started_tb(std::move(options)) {
        c.sign_in();
        id = c.create("dev-1", "QUJDRA==")["id"]["id"];
    }
};

json tb_error(const httplib::Result& r) {
    REQUIRE(r);
    return json::parse(r->body);
}

struct hb_client {
    httplib::Client http;
    explicit hb_client(const fake_hawkbit& hb) : http(hb.url()) { http.set_basic_auth("admin", "admin"); }
    httplib::Result post(const std::string& path, const json& body) { return http.Post(path, body.dump(), "application/json"); }
};

}  // namespace

TEST_CASE("fake ThingsBoard: the stock root rule chain has no reply node: 408 only after the request's timeout", "[fakes]") {
    tb_with_device tb_fixture({.rule_engine = "stock"});
    fake_thingsboard& tb = tb_fixture.tb;
    tb_client& c = tb_fixture.c;
    const std::string id = tb_fixture.id;
    auto start = clock_type::now();
    auto r = c.post("/api/rule-engine/DEVICE/" + id + "/300", {{"event", "firstConnect"}});
    auto waited = clock_type::now() - start;
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(r->body.empty());
    CHECK(waited >= std::chrono::milliseconds(300));
    CHECK(tb.state()["rule_engine_timeouts"] == 1);
    CHECK(tb.device("dev-1")["messages"].size() == 1);  // the message did enter the chain

    SECTION("the cap shortens the wait for tests, nothing else") {
        tb_with_device capped_fixture({.rule_engine = "stock", .rule_engine_max_wait = std::chrono::milliseconds(50)});
        tb_client& cc = capped_fixture.c;
        const std::string cid = capped_fixture.id;
        auto t0 = clock_type::now();
        auto rr = cc.post("/api/rule-engine/DEVICE/" + cid + "/5000", json::object());
        REQUIRE(rr);
        CHECK(rr->status == 408);
        CHECK(clock_type::now() - t0 < std::chrono::milliseconds(2000));
    }
}

TEST_CASE("fake ThingsBoard: reply mode answers 200 at once, absent mode 404 (ThingsBoard < 3.8)", "[fakes]") {
    tb_with_device reply_fixture({.rule_engine = "reply"});  // the fast path, asked for explicitly
    tb_client& c = reply_fixture.c;
    const std::string id = reply_fixture.id;
    auto r = c.post("/api/rule-engine/DEVICE/" + id + "/5000", json::object());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(json::parse(r->body) == json{{"ack", true}});

    tb_with_device absent_fixture({.rule_engine = "absent"});
    tb_client& a = absent_fixture.c;
    const std::string aid = absent_fixture.id;
    auto ra = a.post("/api/rule-engine/DEVICE/" + aid + "/5000", json::object());
    CHECK(tb_error(ra)["errorCode"] == 32);
    CHECK(ra->status == 404);
}

TEST_CASE("fake ThingsBoard: a deleted device is a JSON 404 on /api/device and a plain-text 404 on the rule engine and telemetry", "[fakes]") {
    tb_with_device tb_fixture({.rule_engine = "stock"});
    fake_thingsboard& tb = tb_fixture.tb;
    tb_client& c = tb_fixture.c;
    const std::string id = tb_fixture.id;
    auto del = c.http.Delete("/api/device/" + id, c.auth());
    REQUIRE(del);
    CHECK(del->status == 200);
    CHECK(del->body.empty());
    CHECK(tb.state()["deletes"] == 1);

    auto get = c.get("/api/device/" + id);
    CHECK(get->status == 404);
    CHECK(tb_error(get)["errorCode"] == 32);
    CHECK(tb_error(get)["message"] == "Device with id [" + id + "] is not found");

    // Stock mode would wait the whole timeout for a device that exists: this answers at once.
    auto t0 = clock_type::now();
    auto re = c.post("/api/rule-engine/DEVICE/" + id + "/5000", json::object());
    REQUIRE(re);
    CHECK(re->status == 404);
    CHECK(re->body == "Device with requested id wasn't found!");
    CHECK(clock_type::now() - t0 < std::chrono::milliseconds(2000));
    CHECK_FALSE(json::accept(re->body));  // no JSON error body, whatever the Content-Type says

    auto at = c.post("/api/plugins/telemetry/DEVICE/" + id + "/attributes/SERVER_SCOPE", {{"k", 1}});
    REQUIRE(at);
    CHECK(at->status == 404);
    CHECK(at->body == "Device with requested id wasn't found!");

    auto again = c.http.Delete("/api/device/" + id, c.auth());
    CHECK(again->status == 404);
}

TEST_CASE("fake ThingsBoard: device credentials are versioned; a stale version is 409 with errorCode 35", "[fakes]") {
    tb_with_device tb_fixture;
    fake_thingsboard& tb = tb_fixture.tb;
    tb_client& c = tb_fixture.c;
    const std::string id = tb_fixture.id;
    json creds = json::parse(c.get("/api/device/" + id + "/credentials")->body);
    CHECK(creds["version"] == 1);  // JpaAbstractDao: 1 on create

    json first = creds;
    first["credentialsValue"] = pem("RUZHSA==");
    auto r1 = c.post("/api/device/credentials", first);
    REQUIRE(r1);
    CHECK(r1->status == 200);
    CHECK(json::parse(r1->body)["version"] == 2);

    json stale = creds;  // still version 1
    stale["credentialsValue"] = pem("SUpLTA==");
    auto r2 = c.post("/api/device/credentials", stale);
    CHECK(r2->status == 409);
    CHECK(tb_error(r2)["errorCode"] == 35);
    CHECK(tb.state()["version_conflicts"] == 1);
    CHECK(tb.device("dev-1")["credentials"]["credentialsValue"] == "RUZHSA==");

    json unversioned = stale;  // no version: overwrite (JpaAbstractDao takes the stored one)
    unversioned.erase("version");
    auto r3 = c.post("/api/device/credentials", unversioned);
    CHECK(r3->status == 200);
    CHECK(json::parse(r3->body)["version"] == 3);
}

TEST_CASE("fake ThingsBoard: server-scope attributes are stored, visible, and refused as TelemetryController refuses them", "[fakes]") {
    tb_with_device tb_fixture;
    fake_thingsboard& tb = tb_fixture.tb;
    tb_client& c = tb_fixture.c;
    const std::string id = tb_fixture.id;
    const std::string path = "/api/plugins/telemetry/DEVICE/" + id + "/attributes/SERVER_SCOPE";
    auto ok = c.post(path, {{"devicegateFirstConnect", 1795000000000}, {"devicegateSerial", "0a1b"}, {"ignored", nullptr}});
    REQUIRE(ok);
    CHECK(ok->status == 200);
    CHECK(ok->body.empty());
    CHECK(tb.state()["attribute_writes"] == 1);
    json attrs = tb.device("dev-1")["server_attributes"];
    CHECK(attrs["devicegateSerial"]["value"] == "0a1b");
    CHECK_FALSE(attrs.contains("ignored"));
    json values = json::parse(c.get("/api/plugins/telemetry/DEVICE/" + id + "/values/attributes/SERVER_SCOPE")->body);
    CHECK(values.size() == 2);

    auto again = c.post(path, {{"devicegateSerial", "0c0d"}});  // idempotent overwrite
    CHECK(again->status == 200);
    CHECK(tb.device("dev-1")["server_attributes"]["devicegateSerial"]["value"] == "0c0d");

    auto array = c.post(path, json::array({1}));
    CHECK(array->status == 400);
    CHECK(array->body == "Request is not a JSON object");
    auto empty = c.post(path, json::object());
    CHECK(empty->body == "No attributes data found in request body!");
    auto client_scope = c.post("/api/plugins/telemetry/DEVICE/" + id + "/attributes/CLIENT_SCOPE", {{"k", 1}});
    CHECK(client_scope->status == 400);
    CHECK(client_scope->body == "Invalid scope: CLIENT_SCOPE");
    auto blank = c.post(path, {{"  ", 1}});
    CHECK(blank->body == "Key cannot be empty or contains only spaces");
}

TEST_CASE("fake ThingsBoard: a token with a bad signature is 401/11, a malformed one 401/10", "[fakes]") {
    fake_thingsboard tb;
    tb.start("127.0.0.1", 0);
    tb_client c(tb);
    c.sign_in();
    CHECK(c.get("/api/tenant/devices?pageSize=10&page=0")->status == 200);
    tb.rotate_signing_key();  // ThingsBoard restarted with a new signing key
    auto r = c.get("/api/tenant/devices?pageSize=10&page=0");
    CHECK(r->status == 401);
    CHECK(tb_error(r)["errorCode"] == 11);
    c.token = "not-a-jwt";
    auto m = c.get("/api/tenant/devices?pageSize=10&page=0");
    CHECK(m->status == 401);
    CHECK(tb_error(m)["errorCode"] == 10);
}

TEST_CASE("fake ThingsBoard: with maxFailedLoginAttempts the account locks; stock never locks", "[fakes]") {
    fake_thingsboard tb({.max_failed_login_attempts = 2});
    tb.start("127.0.0.1", 0);
    tb_client c(tb);
    CHECK(tb_error(c.login("wrong"))["message"] == "Invalid username or password");
    CHECK(tb_error(c.login("wrong"))["message"] == "Invalid username or password");
    auto third = c.login("wrong");
    CHECK(third->status == 401);
    CHECK(tb_error(third)["message"] == "User account is locked due to security policy");
    auto right = c.login();
    CHECK(right->status == 401);
    CHECK(tb_error(right)["message"] == "User account is not active");
    CHECK(tb.state()["account_locked"] == true);
    REQUIRE(c.http.Post("/_fake/unlock", "{}", "application/json"));
    CHECK(c.login()->status == 200);

    fake_thingsboard stock;
    stock.start("127.0.0.1", 0);
    tb_client s(stock);
    for (int i = 0; i < 10; ++i) CHECK(s.login("wrong")->status == 401);
    CHECK(s.login()->status == 200);
}

TEST_CASE("fake ThingsBoard: device profiles: the default exists, an unknown type creates one, an unknown id is refused", "[fakes]") {
    fake_thingsboard tb({.device_profiles = {"sensor"}, .customers = {"Acme"}});
    tb.start("127.0.0.1", 0);
    tb_client c(tb);
    c.sign_in();
    json infos = json::parse(c.get("/api/deviceProfileInfos?pageSize=10&page=0&textSearch=SENS")->body);
    REQUIRE(infos["data"].size() == 1);
    CHECK(infos["data"][0]["name"] == "sensor");
    CHECK(json::parse(c.get("/api/deviceProfileInfo/default")->body)["name"] == "default");

    json plain = c.create("dev-0", "QUJDRA==");
    CHECK(plain["type"] == "default");
    json typo = c.create("dev-1", "RUZHSA==", {{"type", "sensr"}});  // DeviceServiceImpl: findOrCreate
    CHECK(typo["type"] == "sensr");
    CHECK(tb.state()["profiles_created"] == 1);
    json by_id = c.create("dev-2", "SUpLTA==", {{"deviceProfileId", infos["data"][0]["id"]}, {"label", "Room 1"}});
    CHECK(by_id["type"] == "sensor");
    CHECK(by_id["label"] == "Room 1");

    auto unknown = c.post("/api/device-with-credentials",
                          {{"device", {{"name", "dev-3"}, {"deviceProfileId", {{"entityType", "DEVICE_PROFILE"}, {"id", "00000000-0000-1000-8000-000000000000"}}}}},
                           {"credentials", {{"credentialsType", "X509_CERTIFICATE"}, {"credentialsValue", pem("TU5PUA==")}}}});
    CHECK(unknown->status == 400);
    CHECK(tb_error(unknown)["message"] == "Device is referencing non existing device profile!");

    json customer = json::parse(c.get("/api/tenant/customers?customerTitle=Acme")->body);
    const std::string cid = customer["id"]["id"];
    auto assign = c.post("/api/customer/" + cid + "/device/" + by_id["id"]["id"].get<std::string>(), json::object());
    CHECK(assign->status == 200);
    CHECK(json::parse(assign->body)["customerId"]["id"] == cid);
    CHECK(c.get("/api/tenant/customers?customerTitle=Nobody")->status == 404);
    json page = json::parse(c.get("/api/tenant/devices?pageSize=2&page=1")->body);
    CHECK(page["totalElements"] == 3);
    CHECK(page["data"].size() == 1);
    CHECK(page["hasNext"] == false);
}

TEST_CASE("fake hawkBit: the DoS filter refuses with 429 and no body, per client IP and second", "[fakes]") {
    fake_hawkbit hb({.dos_filter = true, .dos_max_write = 2});
    hb.start("127.0.0.1", 0);
    hb_client c(hb);
    // DosFilter: the first request stores 0; later ones pass while the counter is <= max.
    for (int i = 0; i < 4; ++i) {
        auto r = c.post("/rest/v1/targets", json::array({{{"controllerId", "d" + std::to_string(i)}}}));
        REQUIRE(r);
        CHECK(r->status == 201);
    }
    auto refused = c.post("/rest/v1/targets", json::array({{{"controllerId", "d9"}}}));
    REQUIRE(refused);
    CHECK(refused->status == 429);
    CHECK(refused->body.empty());
    CHECK(c.http.Get("/rest/v1/targets/d0")->status == 200);  // reads have their own budget
    auto other_ip = c.http.Post("/rest/v1/targets", {{"X-Forwarded-For", "203.0.113.7"}},
                                json::array({{{"controllerId", "d9"}}}).dump(), "application/json");
    CHECK(other_ip->status == 201);
    CHECK(hb.state()["dos_refusals"] == 1);
}

TEST_CASE("fake hawkBit: metadata, its quota (403, not 429) and duplicate keys (409)", "[fakes]") {
    fake_hawkbit hb({.max_metadata_per_target = 2});
    hb.start("127.0.0.1", 0);
    hb_client c(hb);
    REQUIRE(c.post("/rest/v1/targets", json::array({{{"controllerId", "dev-1"}}}))->status == 201);
    auto created = c.post("/rest/v1/targets/dev-1/metadata", json::array({{{"key", "serial"}, {"value", "0a"}}, {{"key", "notAfter"}, {"value", "2027"}}}));
    REQUIRE(created);
    CHECK(created->status == 201);
    CHECK(created->body.empty());
    auto dup = c.post("/rest/v1/targets/dev-1/metadata", json::array({{{"key", "serial"}, {"value", "0b"}}}));
    CHECK(dup->status == 409);
    auto quota = c.post("/rest/v1/targets/dev-1/metadata", json::array({{{"key", "fingerprint"}, {"value", "ab"}}}));
    CHECK(quota->status == 403);
    CHECK(json::parse(quota->body)["errorCode"] == "hawkbit.server.error.quota.tooManyEntries");
    auto put = c.http.Put("/rest/v1/targets/dev-1/metadata/serial", json{{"value", "0c"}}.dump(), "application/json");
    CHECK(put->status == 200);
    CHECK(json::parse(c.http.Get("/rest/v1/targets/dev-1/metadata/serial")->body)["value"] == "0c");
    CHECK(json::parse(c.http.Get("/rest/v1/targets/dev-1/metadata")->body)["total"] == 2);
    CHECK(c.post("/rest/v1/targets/nobody/metadata", json::array())->status == 404);
}

TEST_CASE("fake hawkBit: target types, tags, DELETE target and cancelled actions", "[fakes]") {
    fake_hawkbit hb({.target_types = {"gateway"}});
    hb.start("127.0.0.1", 0);
    hb_client c(hb);
    json types = json::parse(c.http.Get("/rest/v1/targettypes?q=name%3D%3Dgateway")->body);
    REQUIRE(types["total"] == 1);
    const std::int64_t type = types["content"][0]["id"];
    auto created = c.post("/rest/v1/targets", json::array({{{"controllerId", "dev-1"}, {"targetType", type}}}));
    CHECK(created->status == 201);
    CHECK(json::parse(created->body)[0]["targetType"] == type);
    CHECK(c.post("/rest/v1/targets", json::array({{{"controllerId", "dev-2"}, {"targetType", 999}}}))->status == 404);

    auto tag = c.post("/rest/v1/targettags", json::array({{{"name", "revoked"}}}));
    CHECK(tag->status == 201);
    const std::int64_t tag_id = json::parse(tag->body)[0]["id"];
    CHECK(c.post("/rest/v1/targettags", json::array({{{"name", "revoked"}}}))->status == 409);
    CHECK(c.post("/rest/v1/targettags/" + std::to_string(tag_id) + "/assigned/dev-1", json::object())->status == 200);
    CHECK(json::parse(c.http.Get("/rest/v1/targets/dev-1/tags")->body)[0]["name"] == "revoked");

    const std::string action = std::to_string(json::parse(c.post("/_fake/targets/dev-1/actions", json::object())->body)["id"].get<std::int64_t>());
    auto cancel = c.http.Delete("/rest/v1/targets/dev-1/actions/" + action);
    CHECK(cancel->status == 204);
    auto twice = c.http.Delete("/rest/v1/targets/dev-1/actions/" + action);
    CHECK(twice->status == 405);
    CHECK(json::parse(twice->body)["errorCode"] == "hawkbit.server.error.action.notCancelable");
    CHECK(c.http.Delete("/rest/v1/targets/dev-1/actions/" + action + "?force=true")->status == 204);
    CHECK(hb.target("dev-1")["actions"][action] == "canceled");
    CHECK(c.http.Delete("/rest/v1/targets/dev-1/actions/424242")->status == 404);

    auto del = c.http.Delete("/rest/v1/targets/dev-1");
    CHECK(del->status == 200);  // 0.9.0; 204 from 0.10
    CHECK(c.http.Get("/rest/v1/targets/dev-1")->status == 404);
    CHECK(c.http.Delete("/rest/v1/targets/dev-1")->status == 404);
}

TEST_CASE("fake hawkBit: an injected 429 has no body; an injected 403 is a quota error", "[fakes]") {
    fake_hawkbit hb;
    hb.start("127.0.0.1", 0);
    hb_client c(hb);
    hb.set_faults({.fail_next = 1, .fail_status = 429});
    auto r = c.post("/rest/v1/targets", json::array({{{"controllerId", "dev-1"}}}));
    CHECK(r->status == 429);
    CHECK(r->body.empty());
    hb.set_faults({.fail_next = 1, .fail_status = 403});
    auto q = c.post("/rest/v1/targets", json::array({{{"controllerId", "dev-1"}}}));
    CHECK(q->status == 403);
    CHECK(json::parse(q->body)["errorCode"] == "hawkbit.server.error.quota.tooManyEntries");
}
