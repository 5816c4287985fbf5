// The tenant chain through the real broker: the plugin verifies the constant chain once at
// start and per device only the leaf, so the refusals that depend on the chain are tested
// here where mosquitto's own TLS check cannot make them for the plugin.
#include "big_crl.hpp"
#include "chain_factory.hpp"
#include "harness.hpp"
#include "storm_client.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;
using namespace devicegate::test;
using devicegate::bench::storm_client;
using devicegate::bench::storm_device;

namespace {

constexpr int not_authorized = 135;  // MQTT v5 CONNACK reason code

/// Writes <dir>/<id>.crt (leaf + issuer) and <dir>/<id>.key for a device of `issuer`.
void write_device(const std::filesystem::path& dir, const std::string& id, const made_cert& issuer) {
    made_cert leaf = make_cert({"/CN=" + id, device_extensions(id)}, &issuer);
    write_pem(dir / (id + ".crt"), {leaf.cert.get(), issuer.cert.get()});
    write_key(dir / (id + ".key"), leaf.key.get());
}

storm_device storm_device_of(const std::filesystem::path& dir, const std::string& id, const made_cert& issuer) {
    auto devices = devicegate::bench::load_storm_devices(dir.string(), {id});
    devices.at(0).chain.push_back(devicegate::x509_ptr(X509_dup(issuer.cert.get())));
    return std::move(devices.at(0));
}

/// dev-real (issued by the tenant Sub-CA) and dev-twin (by its twin: same name and key id,
/// another key, issued by the ICA) in `dir`; returns the ICA.
made_cert write_real_and_twin_devices(const std::filesystem::path& dir) {
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    made_cert real = load_made(pki("subca-a.crt"), pki("subca-a.key"));
    write_device(dir, "dev-twin", make_twin(real, ica));
    write_device(dir, "dev-real", real);
    return ica;
}

}  // namespace

TEST_CASE("a twin of the tenant Sub-CA (same name and key id, other key, issued by the ICA) is refused",
          "[integration]") {
    // A listener whose cafile holds only the ICA and the Root (devices send their Sub-CA):
    // mosquitto's TLS check accepts the twin's devices, the plugin's pinning must not.
    const auto dir = test_dir();
    made_cert ica = write_real_and_twin_devices(dir);
    made_cert root = load_made(pki("root.crt"), pki("root.key"));
    write_pem(dir / "ica-root.crt", {ica.cert.get(), root.cert.get()});
    const int wide_port = free_port();
    broker b({.listener_extra = "\nlistener " + std::to_string(wide_port) + " 127.0.0.1\ncafile " +
                                (dir / "ica-root.crt").string() + "\ncertfile " + pki("server-chain.crt") +
                                "\nkeyfile " + pki("server.key") + "\nrequire_certificate true\n"});
    REQUIRE(b.start());

    client real_device("dev-real", (dir / "dev-real.crt").string(), (dir / "dev-real.key").string());
    CHECK(real_device.connect(wide_port) == 0);  // the wide listener works
    client twin_device("dev-twin", (dir / "dev-twin.crt").string(), (dir / "dev-twin.key").string());
    CHECK(twin_device.connect(wide_port) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-twin reason=chain_invalid serial="));
    CHECK(b.log_contains("certificate signature failure"));
    // On the tenant listener (cafile with the real Sub-CA) mosquitto's TLS refuses it first.
    client again("dev-twin", (dir / "dev-twin.crt").string(), (dir / "dev-twin.key").string());
    CHECK(again.connect(b.port()) == transport_error);
    CHECK_FALSE(b.log_contains("devicegate: allow client=dev-twin"));
    // The wide listener's cafile lacks the Sub-CA, so the plugin verifies every signature.
    CHECK(b.log_contains("devicegate: leaf_signature=per_connect ca=tenant: cafile " + (dir / "ica-root.crt").string() +
                         " (listener " + std::to_string(wide_port) + " 127.0.0.1) does not hold CN = Tenant A Sub-CA"));
}

TEST_CASE("leaf_signature: with the Sub-CA in every cafile the handshake's signature check is not repeated, and "
          "the twin's devices are still refused",
          "[integration]") {
    const auto dir = test_dir();
    write_real_and_twin_devices(dir);
    for (const char* mode : {"auto", "always"}) {
        INFO("plugin_opt_leaf_signature " << mode);
        broker b({.plugin_opts = {{"leaf_signature", mode},
                                  {"stats_interval", "200ms"},
                                  {"acl_client_pattern", "dev-real read $SYS/broker/devicegate/#"}}});
        REQUIRE(b.start());
        const bool handshake = std::string(mode) == "auto";
        CHECK(b.wait_for_log(handshake ? "devicegate: leaf_signature=handshake ca=tenant: every listener's cafile"
                                       : "devicegate: leaf_signature=per_connect ca=tenant: plugin_opt_leaf_signature "
                                         "always; each certificate's signature is verified again"));
        client real_device("dev-real", (dir / "dev-real.crt").string(), (dir / "dev-real.key").string());
        CHECK(real_device.connect(b.port()) == 0);
        // The client sends the twin in its chain; mosquitto's TLS chooses the real Sub-CA from
        // the cafile and the leaf's signature fails there.
        client twin_device("dev-twin", (dir / "dev-twin.crt").string(), (dir / "dev-twin.key").string());
        CHECK(twin_device.connect(b.port()) == transport_error);
        CHECK_FALSE(b.log_contains("client=dev-twin"));
        REQUIRE(real_device.subscribe("$SYS/broker/devicegate/leaf_signature") >= 0);
        CHECK(real_device.wait_message("$SYS/broker/devicegate/leaf_signature", 2s) ==
              (handshake ? "handshake" : "per_connect"));
    }
}

TEST_CASE("a Sub-CA that expires while the broker runs refuses devices that resume their TLS session",
          "[integration]") {
    // A resumed TLS session skips the handshake's certificate checks, so only the plugin's
    // check of the chain's validity (per connect, also for cached leaves) refuses it.
    const auto dir = test_dir();
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    const long lifetime = 8;
    made_cert sub = make_cert({"/CN=Tenant E Sub-CA/O=Tenant E", ca_extensions(), -3600, lifetime}, &ica);
    const auto expires = std::chrono::system_clock::now() + std::chrono::seconds(lifetime);
    write_pem(dir / "sub-e.crt", {sub.cert.get()});
    write_key(dir / "sub-e.key", sub.key.get());
    devicegate::bench::write_big_crl((dir / "sub-e.crt").string(), (dir / "sub-e.key").string(), 0, {},
                                     (dir / "sub-e.crl").string(), /*pem=*/true);
    write_device(dir, "dev-e", sub);
    broker b({.plugin_opts = {{"tenant_ca_file", (dir / "sub-e.crt").string()}, {"clock_skew", "0s"}},
              .crl_files = {(dir / "sub-e.crl").string()}});
    REQUIRE(b.start());

    storm_client tls(pki("root.crt"));
    std::vector<storm_device> devices;
    devices.push_back(storm_device_of(dir, "dev-e", sub));
    auto first = tls.run(devices, {.port = b.port()});
    REQUIRE(std::chrono::system_clock::now() < expires);  // else the machine was too slow to test this
    REQUIRE(first.accepted == 1);
    REQUIRE(devices[0].session);

    std::this_thread::sleep_until(expires + std::chrono::milliseconds(1500));
    auto resumed = tls.run(devices, {.port = b.port(), .resume = true});
    CHECK(resumed.resumed == 1);
    CHECK(resumed.refused == 1);
    CHECK(b.wait_for_log("devicegate: deny client=dev-e reason=ca_expired serial="));
    // A full handshake is refused by mosquitto's TLS check (certificate has expired).
    devices[0].session.reset();
    auto fresh = tls.run(devices, {.port = b.port()});
    CHECK(fresh.accepted == 0);
    CHECK(fresh.failed == 1);
}

TEST_CASE("a Sub-CA that is not valid yet admits nobody", "[integration]") {
    const auto dir = test_dir();
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    made_cert sub = make_cert({"/CN=Tenant F Sub-CA/O=Tenant F", ca_extensions(), 3600, 86400}, &ica);
    write_pem(dir / "sub-f.crt", {sub.cert.get()});
    write_key(dir / "sub-f.key", sub.key.get());
    devicegate::bench::write_big_crl((dir / "sub-f.crt").string(), (dir / "sub-f.key").string(), 0, {},
                                     (dir / "sub-f.crl").string(), /*pem=*/true);
    write_device(dir, "dev-f", sub);
    broker b({.plugin_opts = {{"tenant_ca_file", (dir / "sub-f.crt").string()}},
              .crl_files = {(dir / "sub-f.crl").string()}});
    REQUIRE(b.start());
    client c("dev-f", (dir / "dev-f.crt").string(), (dir / "dev-f.key").string());
    CHECK(c.connect(b.port()) == transport_error);
    CHECK_FALSE(b.log_contains("devicegate: allow"));
}
