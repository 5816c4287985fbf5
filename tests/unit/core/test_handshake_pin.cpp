// handshake_pin decides whether mosquitto's TLS handshake already verified a device
// certificate's signature with the pinned Sub-CA's key. The rules are checked here, and the
// argument itself against OpenSSL: with a proven cafile the handshake's chain building refuses
// a leaf of the Sub-CA's twin (same name and key id, other key, issued by the ICA, sent by the
// client); with an unproven one it accepts it, which is why the plugin then verifies.
#include "chain_factory.hpp"
#include "devicegate/handshake_pin.hpp"
#include "devicegate/tenant_trust.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace devicegate;
using namespace devicegate::test;

namespace {

listener_tls listener_with(const std::string& cafile) { return {"listener 8883", cafile, "", false}; }

// What a mosquitto listener does with a client's certificates (OpenSSL ssl_verify_cert_chain):
// a store loaded from the cafile, the client's chain as untrusted, the "ssl_client" defaults.
int handshake_verify(const std::string& cafile, X509* leaf, const std::vector<X509*>& sent) {
    x509_store_ptr store(X509_STORE_new());
    REQUIRE(X509_STORE_load_file(store.get(), cafile.c_str()) == 1);
    x509_stack_ptr untrusted(sk_X509_new_null());
    for (X509* x : sent) {
        X509_up_ref(x);
        sk_X509_push(untrusted.get(), x);
    }
    x509_store_ctx_ptr ctx(X509_STORE_CTX_new());
    REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) == 1);
    REQUIRE(X509_STORE_CTX_set_default(ctx.get(), "ssl_client") == 1);
    if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
    return X509_STORE_CTX_get_error(ctx.get());
}

}  // namespace

TEST_CASE("handshake pin: a cafile holding the Sub-CA proves the handshake verified the leaf's signature") {
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    X509* sub = trust->certificate(ca_role::sub_ca);
    auto pin = handshake_pin::evaluate({listener_with(pki("tenant-a-chain.crt"))}, sub);
    CHECK(pin.proven());
    CHECK(pin.why_not().empty());
    CHECK(pin.confirm());

    // Every listener must prove it.
    temp_dir dir;
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    made_cert root = load_made(pki("root.crt"), pki("root.key"));
    write_pem(dir.file("ica-root.crt"), {ica.cert.get(), root.cert.get()});
    auto wide = handshake_pin::evaluate(
        {listener_with(pki("tenant-a-chain.crt")), {"listener 9883", dir.file("ica-root.crt"), "", false}}, sub);
    CHECK_FALSE(wide.proven());
    CHECK_THAT(wide.why_not(), Catch::Contains("ica-root.crt (listener 9883) does not hold CN = Tenant A Sub-CA"));
    CHECK_FALSE(wide.confirm());

    // Another tenant's Sub-CA is not this one.
    auto other = tenant_trust::load(pki("subca-b.crt"), pki("ica.crt"), pki("root.crt"));
    CHECK_FALSE(handshake_pin::evaluate({listener_with(pki("tenant-a-chain.crt"))},
                                        other->certificate(ca_role::sub_ca))
                    .proven());
}

TEST_CASE("handshake pin: what cannot be proven is named") {
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    X509* sub = trust->certificate(ca_role::sub_ca);
    auto why = [&](std::vector<listener_tls> ls) {
        auto pin = handshake_pin::evaluate(ls, sub);
        CHECK_FALSE(pin.proven());
        return pin.why_not();
    };
    CHECK_THAT(why({}), Catch::Contains("no listener"));
    CHECK_THAT(why({{"listener 1", "", "", false}}), Catch::Contains("listener 1 has no cafile"));
    CHECK_THAT(why({{"listener 2", pki("tenant-a-chain.crt"), "/etc/ssl/certs", false}}),
               Catch::Contains("capath /etc/ssl/certs, which OpenSSL reads on demand"));
    CHECK_THAT(why({{"listener 3", pki("tenant-a-chain.crt"), "", true}}), Catch::Contains("websockets"));
    CHECK_THAT(why({listener_with("/nonexistent/ca.crt")}), Catch::Contains("cannot stat cafile /nonexistent/ca.crt"));
    temp_dir dir;
    write_file(dir.file("garbage.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    CHECK_THAT(why({listener_with(dir.file("garbage.crt"))}), Catch::Contains("cannot load cafile"));

    // A second certificate with the Sub-CA's name: the handshake might choose it.
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    made_cert real = load_made(pki("subca-a.crt"), pki("subca-a.key"));
    made_cert twin = make_twin(real, ica);
    write_pem(dir.file("both.crt"), {real.cert.get(), twin.cert.get(), ica.cert.get()});
    CHECK_THAT(why({listener_with(dir.file("both.crt"))}), Catch::Contains("holds 2 certificates named CN = Tenant A Sub-CA"));

    CHECK(handshake_pin::refused("plugin_opt_leaf_signature always").why_not() == "plugin_opt_leaf_signature always");
    CHECK_FALSE(handshake_pin::refused("x").confirm());
}

TEST_CASE("handshake pin: a cafile replaced after the plugin read it is not proven any more") {
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    temp_dir dir;
    std::filesystem::copy_file(pki("tenant-a-chain.crt"), dir.file("ca.crt"));
    auto pin = handshake_pin::evaluate({listener_with(dir.file("ca.crt"))}, trust->certificate(ca_role::sub_ca));
    REQUIRE(pin.proven());
    SECTION("rewritten in place with the same bytes") {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        write_file(dir.file("ca.crt"), read_file(pki("tenant-a-chain.crt"), 1 << 20));
    }
    SECTION("replaced by a rename") {
        std::filesystem::copy_file(pki("tenant-a-chain.crt"), dir.file("new.crt"));
        std::filesystem::rename(dir.file("new.crt"), dir.file("ca.crt"));
    }
    CHECK_FALSE(pin.confirm());
    CHECK_THAT(pin.why_not(), Catch::Contains("ca.crt changed between the plugin's start"));
}

TEST_CASE("handshake pin: OpenSSL's handshake refuses a twin's leaf exactly when the pin is proven") {
    made_cert root = load_made(pki("root.crt"), pki("root.key"));
    made_cert ica = load_made(pki("ica.crt"), pki("ica.key"));
    made_cert real = load_made(pki("subca-a.crt"), pki("subca-a.key"));
    // The twin: the Sub-CA's name and key id, another key, issued by the ICA itself (the
    // strongest twin: it chains to the Root), and sent by the client with its leaf.
    made_cert twin = make_twin(real, ica);
    made_cert twin_leaf = make_cert({"/CN=dev-twin", device_extensions("dev-twin")}, &twin);
    made_cert real_leaf = make_cert({"/CN=dev-real", device_extensions("dev-real")}, &real);
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    // The twin's leaf passes the plugin's pinning: only a signature check tells them apart.
    CHECK(trust->verify(twin_leaf.cert.get(), leaf_signature::verified_by_handshake).why == reason::ok);
    CHECK(trust->verify(twin_leaf.cert.get()).why == reason::chain_invalid);

    temp_dir dir;
    write_pem(dir.file("tenant.crt"), {real.cert.get(), ica.cert.get(), root.cert.get()});
    write_pem(dir.file("ica-root.crt"), {ica.cert.get(), root.cert.get()});
    X509* sub = trust->certificate(ca_role::sub_ca);

    REQUIRE(handshake_pin::evaluate({listener_with(dir.file("tenant.crt"))}, sub).proven());
    CHECK(handshake_verify(dir.file("tenant.crt"), real_leaf.cert.get(), {real.cert.get()}) == X509_V_OK);
    CHECK(handshake_verify(dir.file("tenant.crt"), twin_leaf.cert.get(), {twin.cert.get()}) ==
          X509_V_ERR_CERT_SIGNATURE_FAILURE);
    CHECK(handshake_verify(dir.file("tenant.crt"), twin_leaf.cert.get(), {twin.cert.get(), ica.cert.get()}) ==
          X509_V_ERR_CERT_SIGNATURE_FAILURE);

    REQUIRE_FALSE(handshake_pin::evaluate({listener_with(dir.file("ica-root.crt"))}, sub).proven());
    CHECK(handshake_verify(dir.file("ica-root.crt"), twin_leaf.cert.get(), {twin.cert.get()}) == X509_V_OK);
}
