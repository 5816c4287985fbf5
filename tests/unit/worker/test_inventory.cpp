// inventory.cpp (the paged reads `devicegate-ctl reconcile` uses) against the in-process fakes,
// and the fakes' paging as ThingsBoard and hawkBit validate it (docs/integrations.md §G).
#include "fake_backend_clients.hpp"
#include "inventory.hpp"
#include "issued_job.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

using namespace devicegate;
using namespace devicegate::worker;
using nlohmann::json;

namespace {

/// The fakes and the worker's clients, plus short waits between retries.
struct inventory_fixture : test::fake_backend_clients {
    inventory_options fast;

    inventory_fixture() { fast.backoff = std::chrono::milliseconds(1); }
    /// Registers `id` in both fakes with a fresh certificate; returns the job.
    job add(const std::string& id) {
        job j = test::issued_job(id);
        thingsboard->register_device(j);
        hawkbit->ensure_target(id);
        return j;
    }
    /// A GET with the tenant token (or Basic for hawkBit), for the fakes' own validation.
    http_response tb_get(const std::string& path) { return thingsboard->get(path); }
    http_response hb_get(const std::string& path) { return hawkbit->get(path, "GET"); }
    long long requests(const fakes::fake_server& f) const { return f.state()["requests"].get<long long>(); }
};

std::set<std::string> names(const std::vector<inventory_entry>& entries) {
    std::set<std::string> out;
    for (const auto& e : entries) out.insert(e.name);
    return out;
}

}  // namespace

TEST_CASE("Inventory: every ThingsBoard device and hawkBit target, page by page", "[worker][inventory]") {
    inventory_fixture f;
    std::set<std::string> ids;
    for (int i = 0; i < 23; ++i) ids.insert(f.add("dev-" + std::to_string(100 + i)).cert.device_id);
    inventory_options o;
    o.page_size = 5;

    const auto tb_before = f.requests(f.tb);
    auto devices = list_thingsboard_devices(*f.thingsboard, o);
    CHECK(names(devices) == ids);
    CHECK(devices.size() == 23);
    CHECK(f.requests(f.tb) - tb_before == 5);  // pages 0..4, the last one with hasNext false
    for (const auto& d : devices) CHECK(d.thingsboard_id == f.tb.device(d.name)["id"]["id"].get<std::string>());

    const auto hb_before = f.requests(f.hb);
    auto targets = list_hawkbit_targets(*f.hawkbit, o);
    CHECK(names(targets) == ids);
    CHECK(targets.size() == 23);
    CHECK(f.requests(f.hb) - hb_before == 5);  // offsets 0, 5, 10, 15, 20: then offset 23 = total

    o.page_size = 100000;  // hawkBit caps a limit at 500; we ask for no more
    CHECK(names(list_hawkbit_targets(*f.hawkbit, o)) == ids);
    o.page_size = 1;
    CHECK(names(list_thingsboard_devices(*f.thingsboard, o)) == ids);

    // Empty backends: one page each, nothing listed.
    fakes::fake_thingsboard empty_tb;
    empty_tb.start("127.0.0.1", 0);
    thingsboard_settings s{empty_tb.url(), "tenant@thingsboard.org", "tenant"};
    thingsboard_session session(s, std::chrono::seconds(5), f.metrics, f.tb_gate);
    thingsboard_client client(s, std::chrono::seconds(5), session, f.metrics, f.tb_setup);
    CHECK(list_thingsboard_devices(client, o).empty());
}

TEST_CASE("Inventory: devices created during the scan neither hide nor repeat the others", "[worker][inventory]") {
    inventory_fixture f;
    std::set<std::string> before;
    for (int i = 0; i < 30; ++i) before.insert(f.add("old-" + std::to_string(i)).cert.device_id);
    std::atomic<bool> stop{false};
    std::atomic<int> created{0};
    std::thread creator([&] {
        // Its own clients: one curl handle per thread (the session is shared, as in the worker).
        thingsboard_client tb(f.tb_settings, std::chrono::seconds(5), *f.session, f.metrics, f.tb_setup);
        hawkbit_client hb(f.hb_settings, std::chrono::seconds(5), f.metrics, f.hb_gate, f.hb_setup);
        for (int i = 0; !stop; ++i) {
            job j = test::issued_job("new-" + std::to_string(i));
            tb.register_device(j);
            hb.ensure_target(j.cert.device_id);
            ++created;
        }
    });
    inventory_options o;
    o.page_size = 3;
    std::vector<inventory_entry> devices, targets;
    // Each listing takes ~11 pages; the creator adds devices between them.
    for (int round = 0; round < 3; ++round) {
        devices = list_thingsboard_devices(*f.thingsboard, o);
        targets = list_hawkbit_targets(*f.hawkbit, o);
    }
    stop = true;
    creator.join();
    CHECK(created > 0);
    for (const auto* list : {&devices, &targets}) {
        auto listed = names(*list);
        CHECK(listed.size() == list->size());  // none twice
        for (const auto& id : before) CHECK(listed.count(id) == 1);
    }
}

TEST_CASE("Inventory: point lookups and the credentials a ThingsBoard device holds", "[worker][inventory]") {
    inventory_fixture f;
    job j = f.add("dev-200");
    CHECK(thingsboard_device_exists(*f.thingsboard, "dev-200", f.fast));
    CHECK_FALSE(thingsboard_device_exists(*f.thingsboard, "dev-201", f.fast));
    CHECK(hawkbit_target_exists(*f.hawkbit, "dev-200", f.fast));
    CHECK_FALSE(hawkbit_target_exists(*f.hawkbit, "dev-201", f.fast));

    const std::string uuid = f.tb.device("dev-200")["id"]["id"].get<std::string>();
    auto creds = read_thingsboard_credentials(*f.thingsboard, uuid, f.fast);
    REQUIRE(creds);
    CHECK(creds->type == "X509_CERTIFICATE");
    CHECK(creds->fingerprint_sha256 == j.cert.fingerprint_sha256);  // SHA-256 of the DER, as Redis keeps it
    REQUIRE(f.tb.delete_device("dev-200"));
    CHECK_FALSE(read_thingsboard_credentials(*f.thingsboard, uuid, f.fast));

    CHECK(thingsboard_value_fingerprint("") == "");
    CHECK(thingsboard_value_fingerprint("not base64!") == "");
    CHECK(thingsboard_value_fingerprint("YWJj") ==  // "abc"
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(thingsboard_value_fingerprint("YWI=") ==  // "ab": the padding is not hashed
          "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603");
}

TEST_CASE("Inventory: a backend error names the backend, the call and the status", "[worker][inventory]") {
    inventory_fixture f;
    f.add("dev-300");
    SECTION("ThingsBoard 503: retried, then a retryable failure") {
        f.tb.set_faults({.path = "/api/tenant/devices", .fail_always = 503});
        try {
            list_thingsboard_devices(*f.thingsboard, f.fast);
            FAIL("no failure");
        } catch (const target_failure& e) {
            CHECK(e.which == target::thingsboard);
            CHECK(e.status == 503);
            CHECK(e.retryable);
            CHECK_THAT(e.what(), Catch::StartsWith("thingsboard: GET /api/tenant/devices (page 0): HTTP 503"));
        }
        CHECK(f.tb.state()["faults_injected"] == 3);  // inventory_options::attempts
    }
    SECTION("ThingsBoard 400: not retried") {
        f.tb.set_faults({.path = "/api/tenant/devices", .fail_always = 400});
        CHECK_THROWS_WITH(list_thingsboard_devices(*f.thingsboard, f.fast), Catch::Contains("HTTP 400"));
        CHECK(f.tb.state()["faults_injected"] == 1);
    }
    SECTION("hawkBit 500 on a later page") {
        f.add("dev-301");
        inventory_options o = f.fast;
        o.page_size = 1;
        o.attempts = 1;
        f.hb.set_faults({.path = "/rest/v1/targets", .fail_always = 500});
        CHECK_THROWS_WITH(list_hawkbit_targets(*f.hawkbit, o),
                          Catch::StartsWith("hawkbit: GET /rest/v1/targets (offset 0): HTTP 500"));
    }
    SECTION("hawkBit refuses the login: the gate pauses, the failure says so") {
        hawkbit_settings wrong{f.hb.url(), "admin", "wrong"};
        hawkbit_client client(wrong, std::chrono::seconds(5), f.metrics, f.hb_gate, f.hb_setup);
        try {
            list_hawkbit_targets(client, f.fast);
            FAIL("no failure");
        } catch (const target_failure& e) {
            CHECK(e.paused);
            CHECK_THAT(e.what(), Catch::Contains("hawkbit: login refused") && Catch::Contains("HTTP 401"));
        }
    }
}

TEST_CASE("Fakes: ThingsBoard's device paging validated and ordered as DeviceController pages it", "[fakes][inventory]") {
    inventory_fixture f;
    for (int i = 0; i < 7; ++i) f.add("dev-" + std::to_string(400 + i));
    auto page = [&](const std::string& query) { return f.tb_get("/api/tenant/devices?" + query); };
    auto body = [](const http_response& r) { return json::parse(r.body); };

    auto p = page("pageSize=3&page=2&sortProperty=createdTime&sortOrder=ASC");
    REQUIRE(p.status == 200);
    CHECK(body(p)["data"].size() == 1);
    CHECK(body(p)["totalPages"] == 3);
    CHECK(body(p)["totalElements"] == 7);
    CHECK(body(p)["hasNext"] == false);
    CHECK(body(page("pageSize=3&page=0"))["hasNext"] == true);
    CHECK(body(page("pageSize=3&page=9"))["data"].empty());
    auto by_name_desc = body(page("pageSize=10&page=0&sortProperty=name&sortOrder=desc"))["data"];
    CHECK(by_name_desc[0]["name"] == "dev-406");
    CHECK(by_name_desc[6]["name"] == "dev-400");
    CHECK(body(page("pageSize=10&page=0&textSearch=DEV-40"))["totalElements"] == 7);
    CHECK(body(page("pageSize=10&page=0&textSearch=403"))["totalElements"] == 1);
    CHECK(body(page("pageSize=10&page=0&type=default"))["totalElements"] == 7);
    CHECK(body(page("pageSize=10&page=0&type=other"))["totalElements"] == 0);

    for (const auto& [query, message] : std::vector<std::pair<std::string, std::string>>{
             {"pageSize=0&page=0", "Page size must be greater than zero"},
             {"pageSize=5&page=-1", "Page must be positive integer"},
             {"pageSize=x&page=0", "Failed to convert"},
             {"pageSize=5", "Required request parameter 'pageSize'"},
             {"pageSize=5&page=0&sortProperty=name;drop", "Invalid sort property"},
             {"pageSize=5&page=0&sortProperty=name&sortOrder=UP", "Unsupported sort order 'UP'"},
         }) {
        auto r = page(query);
        INFO(query);
        CHECK(r.status == 400);
        CHECK(body(r)["errorCode"] == 31);
        CHECK_THAT(r.body, Catch::Contains(message));
    }
}

TEST_CASE("Fakes: hawkBit's target paging clamps offset and limit and checks the sort as MgmtTargetResource does",
          "[fakes][inventory]") {
    inventory_fixture f;
    for (int i = 0; i < 3; ++i) f.add("dev-" + std::to_string(502 - i));  // created in reverse name order
    auto page = [&](const std::string& query) { return f.hb_get("/rest/v1/targets?" + query); };
    auto body = [](const http_response& r) { return json::parse(r.body); };

    auto by_id = body(page("offset=0&limit=2"));  // default: controllerId ASC
    CHECK(by_id["total"] == 3);
    CHECK(by_id["size"] == 2);
    CHECK(by_id["content"][0]["controllerId"] == "dev-500");
    auto by_creation = body(page("sort=createdAt:ASC,controllerId:ASC"))["content"];
    CHECK(by_creation[0]["controllerId"] == "dev-502");
    CHECK(by_creation[2]["controllerId"] == "dev-500");
    CHECK(body(page("sort=NAME:desc"))["content"][0]["controllerId"] == "dev-502");
    CHECK(body(page("offset=-5&limit=1"))["content"][0]["controllerId"] == "dev-500");  // below 0: 0
    CHECK(body(page("limit=0"))["size"] == 3);                                          // below 1: 50
    CHECK(body(page("offset=3"))["size"] == 0);

    for (const auto& [query, code] : std::vector<std::pair<std::string, std::string>>{
             {"sort=createdAt", "sortParamSyntax"},
             {"sort=bogus:ASC", "invalidField"},
             {"sort=name:UP", "invalidDirection"},
             {"offset=x", "hawkbit.server.error.rest.param"},
         }) {
        auto r = page(query);
        INFO(query);
        CHECK(r.status == 400);
        CHECK_THAT(r.body, Catch::Contains(code));
    }

    // More than 500 at once: a limit above the maximum gets 500.
    json many = json::array();
    for (int i = 0; i < 520; ++i) many.push_back({{"controllerId", "bulk-" + std::to_string(i)}});
    http_client http;
    http_get_options o;
    o.headers = {"Authorization: Basic " + base64_encode("admin:admin"), "Accept: application/json"};
    REQUIRE(http.post(f.hb.url() + "/rest/v1/targets", many.dump(), "application/json", o).status == 201);
    auto capped = body(page("limit=100000"));
    CHECK(capped["size"] == 500);
    CHECK(capped["total"] == 523);
}
