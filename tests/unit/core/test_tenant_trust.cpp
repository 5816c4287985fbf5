// tenant_trust verifies the constant chain (Sub-CA <- ICA <- Root) once at load and per
// device only the leaf. Every refusal is checked here, and every case is also run through
// verify_full() (X509_verify_cert over the whole chain, the code before the change) so that
// the two agree: the per-device path must refuse exactly what X509_verify_cert refused.
#include "chain_factory.hpp"
#include "devicegate/crl_set.hpp"
#include "devicegate/tenant_trust.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace devicegate;
using namespace devicegate::test;
using ext_list = std::vector<std::pair<std::string, std::string>>;

namespace {

/// `base` with the extensions of `more` replacing those of the same name, or added.
ext_list with(ext_list base, const ext_list& more) {
    for (const auto& e : more) {
        auto same = std::find_if(base.begin(), base.end(), [&](const auto& b) { return b.first == e.first; });
        if (same != base.end()) *same = e;
        else base.push_back(e);
    }
    return base;
}

/// A Root -> ICA -> Sub-CA chain of its own (with optional extra extensions per CA),
/// written to files for tenant_trust::load.
struct chain {
    temp_dir dir;
    made_cert root, ica, sub;
    explicit chain(const ext_list& root_extra = {}, const ext_list& ica_extra = {}, const ext_list& sub_extra = {},
                   const ext_list& sub_base = ca_extensions())
        : root(make_cert({"/CN=Unit Root/O=P", with(ca_extensions(), root_extra)}, nullptr)),
          ica(make_cert({"/CN=Unit ICA/O=P", with(ca_extensions(), ica_extra)}, &root)),
          sub(make_cert({"/CN=Unit Sub-CA/O=T", with(sub_base, sub_extra)}, &ica)) {
        write_pem(dir.file("root.crt"), {root.cert.get()});
        write_pem(dir.file("ica.crt"), {ica.cert.get()});
        write_pem(dir.file("sub.crt"), {sub.cert.get()});
    }
    std::shared_ptr<const tenant_trust> load() const {
        return tenant_trust::load(dir.file("sub.crt"), dir.file("ica.crt"), dir.file("root.crt"));
    }
    made_cert leaf(const std::string& id, const ext_list& extra = {}, evp_pkey_ptr key = {}) const {
        return make_cert({"/CN=" + id, with(device_extensions(id), extra)}, &sub, std::move(key));
    }
};

/// The certificate as the broker gets it: parsed from DER (a key built in memory is not
/// "decoded from explicit parameters" until it is parsed).
x509_ptr reparsed(X509* cert) {
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert, &der);
    REQUIRE(len > 0);
    std::string bytes(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    return std::move(parse_certificates(bytes, "der").at(0));
}

/// Checks `leaf` with both paths: the per-device one must decide exactly like X509_verify_cert.
reason decide(const tenant_trust& trust, X509* in_memory) {
    x509_ptr leaf_der = reparsed(in_memory);
    X509* leaf = leaf_der.get();
    auto fast = trust.verify(leaf);
    auto full = trust.verify_full(leaf);
    INFO("fast: " << to_string(fast.why) << " " << fast.detail << "; full: " << to_string(full.why) << " "
                  << full.detail);
    CHECK(fast.why == full.why);
    CHECK((fast.why == reason::ok) == fast.cert.has_value());
    if (fast.why != reason::ok) CHECK_FALSE(fast.detail.empty());
    return fast.why;
}

}  // namespace

TEST_CASE("tenant trust: a leaf of the pinned Sub-CA is admitted with one signature check") {
    chain c;
    auto trust = c.load();
    auto leaf = c.leaf("dev-1");
    CHECK(decide(*trust, leaf.cert.get()) == reason::ok);
    auto out = trust->verify(leaf.cert.get());
    REQUIRE(out.cert);
    CHECK(out.cert->device_id == "dev-1");
    CHECK(out.cert->serial_hex() == serial_hex(X509_get0_serialNumber(leaf.cert.get())));
    // The test PKI's devices as well.
    auto pki_trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    CHECK(decide(*pki_trust, load_cert(device_cert("dev-001")).get()) == reason::ok);
    CHECK(decide(*pki_trust, load_cert(device_cert("dev-nosan")).get()) == reason::ok);
}

TEST_CASE("tenant trust: the forged Sub-CA twin (same name and key id, other key) is refused") {
    chain c;
    auto trust = c.load();
    SECTION("twin issued by the same ICA") {
        made_cert twin = make_cert(
            {"/CN=Unit Sub-CA/O=T",
             {{"basicConstraints", "critical,CA:TRUE"}, {"keyUsage", "critical,keyCertSign,cRLSign"},
              {"subjectKeyIdentifier", subject_key_id(c.sub.cert.get())}, {"authorityKeyIdentifier", "keyid:always"}}},
            &c.ica);
        auto leaf = make_cert({"/CN=dev-twin", device_extensions("dev-twin")}, &twin);
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
        CHECK(trust->verify(leaf.cert.get()).detail == "certificate signature failure");
    }
    SECTION("self-signed twin") {
        made_cert twin = make_cert({"/CN=Unit Sub-CA/O=T",
                                    {{"basicConstraints", "critical,CA:TRUE"},
                                     {"subjectKeyIdentifier", subject_key_id(c.sub.cert.get())}}},
                                   nullptr);
        auto leaf = make_cert({"/CN=dev-twin", device_extensions("dev-twin")}, &twin);
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
    }
    SECTION("the test PKI's twin") {
        auto pki_trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
        CHECK(decide(*pki_trust, load_cert(device_cert("dev-forged")).get()) == reason::chain_invalid);
    }
    SECTION("a leaf whose signed part was altered after signing") {
        auto leaf = c.leaf("dev-1");
        unsigned char* der = nullptr;
        const int len = i2d_X509(leaf.cert.get(), &der);
        REQUIRE(len > 0);
        std::string bytes(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
        OPENSSL_free(der);
        const std::size_t at = bytes.find("dev-1");  // the CN inside the signed part
        REQUIRE(at != std::string::npos);
        bytes[at + 4] = '2';
        auto altered = parse_certificates(bytes, "altered");
        CHECK(decide(*trust, altered.at(0).get()) == reason::chain_invalid);
    }
}

TEST_CASE("tenant trust: another tenant's Sub-CA, foreign roots and CA certificates as clients are refused") {
    chain c;
    auto trust = c.load();
    made_cert other_sub = make_cert({"/CN=Other Sub-CA/O=B", ca_extensions()}, &c.ica);
    auto other_leaf = make_cert({"/CN=dev-b", device_extensions("dev-b")}, &other_sub);
    CHECK(decide(*trust, other_leaf.cert.get()) == reason::wrong_issuer);

    auto pki_trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    CHECK(decide(*pki_trust, load_cert(device_cert("tenant-b-dev")).get()) == reason::wrong_issuer);
    CHECK(decide(*pki_trust, load_cert(device_cert("foreign-dev")).get()) == reason::wrong_issuer);
    CHECK(decide(*pki_trust, load_cert(device_cert("dev-self")).get()) == reason::self_signed);

    // A CA certificate issued by the pinned Sub-CA, and the chain's own CAs.
    auto ca_leaf = make_cert({"/CN=dev-ca", ca_extensions()}, &c.sub);
    CHECK(decide(*trust, ca_leaf.cert.get()) == reason::not_end_entity);
    CHECK(decide(*trust, c.sub.cert.get()) == reason::wrong_issuer);
    CHECK(decide(*trust, c.ica.cert.get()) == reason::wrong_issuer);
    CHECK(decide(*trust, c.root.cert.get()) == reason::self_signed);
    CHECK(decide(*pki_trust, load_cert(device_cert("dev-ca")).get()) == reason::not_end_entity);
}

TEST_CASE("tenant trust: leaf extensions X509_verify_cert refused are refused explicitly") {
    chain c;
    auto trust = c.load();
    SECTION("unknown critical extension") {
        auto leaf = c.leaf("dev-1", {{"1.3.6.1.4.1.55555.1", "critical,DER:05:00"}});
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
        CHECK(trust->verify(leaf.cert.get()).detail == "unhandled critical extension");
        // Not critical: ignored, as X509_verify_cert ignores it.
        auto fine = c.leaf("dev-2", {{"1.3.6.1.4.1.55555.1", "DER:05:00"}});
        CHECK(decide(*trust, fine.cert.get()) == reason::ok);
    }
    SECTION("duplicate extension") {
        auto twice = device_extensions("dev-1");
        twice.emplace_back("extendedKeyUsage", "clientAuth");
        auto leaf = make_cert({"/CN=dev-1", twice}, &c.sub);
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
    }
    SECTION("proxy certificate") {
        // OpenSSL marks a proxy certificate with a subjectAltName invalid (RFC 3820 3.5),
        // refused before the issuer check (which wants keyUsage digitalSignature for a proxy).
        auto leaf = c.leaf("dev-1", {{"1.3.6.1.5.5.7.1.14", "critical,DER:30:0C:30:0A:06:08:2B:06:01:05:05:07:15:00"}});
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
        CHECK((X509_get_extension_flags(leaf.cert.get()) & EXFLAG_INVALID) != 0);
    }
    SECTION("EC key with explicit curve parameters") {
        auto leaf = c.leaf("dev-1", {}, new_p256_key(/*explicit_curve=*/true));
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
        CHECK(trust->verify(reparsed(leaf.cert.get()).get()).detail.find("explicit") != std::string::npos);
    }
    SECTION("extendedKeyUsage without clientAuth") {
        auto leaf = make_cert({"/CN=dev-1",
                               {{"basicConstraints", "critical,CA:FALSE"},
                                {"extendedKeyUsage", "serverAuth"},
                                {"authorityKeyIdentifier", "keyid:always"}}},
                              &c.sub);
        CHECK(decide(*trust, leaf.cert.get()) == reason::wrong_eku);
        CHECK(trust->verify(leaf.cert.get()).detail == "extendedKeyUsage does not include clientAuth");
        auto eku = [&](const char* value) {
            return make_cert({"/CN=dev-1",
                              {{"basicConstraints", "critical,CA:FALSE"},
                               {"extendedKeyUsage", value},
                               {"authorityKeyIdentifier", "keyid:always"}}},
                             &c.sub);
        };
        CHECK(decide(*trust, eku("serverAuth,clientAuth").cert.get()) == reason::ok);
        CHECK(decide(*trust, eku("anyExtendedKeyUsage").cert.get()) == reason::ok);
        // Not a SEQUENCE of OIDs: OpenSSL marks the certificate invalid; refused, with the cause.
        auto broken = eku("DER:05:00");
        CHECK(decide(*trust, broken.cert.get()) == reason::chain_invalid);
        CHECK(trust->verify(broken.cert.get()).detail == X509_verify_cert_error_string(X509_V_ERR_INVALID_EXTENSION));
        std::string detail;
        CHECK(check_client_auth_eku(broken.cert.get(), detail) == reason::wrong_eku);
        CHECK(detail == "extendedKeyUsage extension cannot be decoded");
        auto none = make_cert(
            {"/CN=dev-1", {{"basicConstraints", "critical,CA:FALSE"}, {"authorityKeyIdentifier", "keyid:always"}}}, &c.sub);
        CHECK(decide(*trust, none.cert.get()) == reason::ok);  // no extension: any use
    }
    SECTION("RFC 3779 resources in a leaf go through the full verification") {
        auto leaf = c.leaf("dev-1", {{"sbgp-ipAddrBlock", "critical,IPv4:10.0.0.0/8"}});
        CHECK(decide(*trust, leaf.cert.get()) == reason::chain_invalid);
    }
}

TEST_CASE("tenant trust: name constraints of every CA apply to the leaf") {
    SECTION("permitted subtree on the Sub-CA") {
        chain c({}, {}, {{"nameConstraints", "critical,permitted;DNS:devices.example"}});
        auto trust = c.load();
        CHECK(decide(*trust, c.leaf("d1.devices.example").cert.get()) == reason::ok);
        CHECK(decide(*trust, c.leaf("d1.elsewhere.example").cert.get()) == reason::chain_invalid);
        CHECK(trust->verify(c.leaf("d2.elsewhere.example").cert.get()).detail == "permitted subtree violation");
        // Without a DNS SAN the CN is checked against DNS constraints (OpenSSL 3.0).
        auto no_san = make_cert({"/CN=d3.elsewhere.example",
                                 {{"basicConstraints", "critical,CA:FALSE"}, {"authorityKeyIdentifier", "keyid:always"}}},
                                &c.sub);
        CHECK(decide(*trust, no_san.cert.get()) == reason::chain_invalid);
    }
    SECTION("excluded subtree on the Root, permitted on the ICA") {
        chain c({{"nameConstraints", "critical,excluded;DNS:bad.example"}},
                {{"nameConstraints", "critical,permitted;DNS:example"}});
        auto trust = c.load();
        CHECK(decide(*trust, c.leaf("d1.good.example").cert.get()) == reason::ok);
        CHECK(decide(*trust, c.leaf("d1.bad.example").cert.get()) == reason::chain_invalid);
        CHECK(decide(*trust, c.leaf("d1.example-other").cert.get()) == reason::chain_invalid);
    }
}

TEST_CASE("tenant trust: the constant part of the chain is refused at load, with the cause") {
    SECTION("Sub-CA without basicConstraints CA:TRUE (keyCertSign only)") {
        chain c({}, {}, {}, {{"keyUsage", "critical,keyCertSign,cRLSign"}, {"subjectKeyIdentifier", "hash"}});
        CHECK_THROWS_WITH(c.load(), Catch::Contains("has no basicConstraints CA:TRUE"));
    }
    SECTION("ICA without basicConstraints") {
        chain c({}, {{"basicConstraints", "CA:FALSE"}});
        CHECK_THROWS_AS(c.load(), pki_error);
    }
    SECTION("Sub-CA whose keyUsage does not allow keyCertSign") {
        chain c({}, {}, {},
                {{"basicConstraints", "critical,CA:TRUE"}, {"keyUsage", "critical,digitalSignature,cRLSign"}});
        // X509_check_ca: a keyUsage without keyCertSign makes it no CA.
        CHECK_THROWS_WITH(c.load(), Catch::Contains("is not a CA certificate"));
    }
    SECTION("path length: ICA pathlen:0 leaves no room for the Sub-CA") {
        chain c({}, {{"basicConstraints", "critical,CA:TRUE,pathlen:0"}});
        CHECK_THROWS_WITH(c.load(), Catch::Contains("pathLenConstraint 0"));
    }
    SECTION("path length: Root pathlen:1 leaves no room for ICA and Sub-CA") {
        chain c(ext_list{{"basicConstraints", "critical,CA:TRUE,pathlen:1"}});
        CHECK_THROWS_WITH(c.load(), Catch::Contains("pathLenConstraint 1"));
    }
    SECTION("path lengths that fit: Root 2, ICA 1, Sub-CA 0") {
        chain c({{"basicConstraints", "critical,CA:TRUE,pathlen:2"}}, {{"basicConstraints", "critical,CA:TRUE,pathlen:1"}},
                {{"basicConstraints", "critical,CA:TRUE,pathlen:0"}});
        auto trust = c.load();
        CHECK(decide(*trust, c.leaf("dev-1").cert.get()) == reason::ok);
    }
    SECTION("unknown critical extension in the ICA") {
        chain c({}, {{"1.3.6.1.4.1.55555.1", "critical,DER:05:00"}});
        CHECK_THROWS_WITH(c.load(), Catch::Contains("unhandled critical extension"));
    }
    SECTION("name constraints of the Root exclude a name of the Sub-CA") {
        chain c({{"nameConstraints", "critical,excluded;DNS:bad.example"}}, {}, {{"subjectAltName", "DNS:sub.bad.example"}});
        CHECK_THROWS_WITH(c.load(), Catch::Contains("excluded subtree violation"));
    }
}

TEST_CASE("tenant trust: a chain CA outside its validity refuses devices, also cached ones") {
    using namespace std::chrono_literals;
    chain valid;
    auto leaf = valid.leaf("dev-1");
    auto trust = valid.load();
    auto out = trust->verify(leaf.cert.get());
    REQUIRE(out.cert);
    std::string detail;
    const std::time_t now = std::time(nullptr);
    CHECK(trust->check_times(*out.cert, now, 0s, detail) == reason::ok);

    SECTION("ICA expires while the broker runs") {
        temp_dir dir;
        made_cert root = make_cert({"/CN=R", ca_extensions()}, nullptr);
        made_cert ica = make_cert({"/CN=I", ca_extensions(), -3600, 600}, &root);
        made_cert sub = make_cert({"/CN=S", ca_extensions()}, &ica);
        write_pem(dir.file("r"), {root.cert.get()});
        write_pem(dir.file("i"), {ica.cert.get()});
        write_pem(dir.file("s"), {sub.cert.get()});
        auto t = tenant_trust::load(dir.file("s"), dir.file("i"), dir.file("r"));
        auto l = make_cert({"/CN=dev-1", device_extensions("dev-1")}, &sub);
        auto v = t->verify(l.cert.get());
        REQUIRE(v.cert);
        CHECK(t->check_times(*v.cert, now, 0s, detail) == reason::ok);
        CHECK(t->check_times(*v.cert, now + 601, 0s, detail) == reason::ca_expired);
        CHECK(t->check_times(*v.cert, now + 601, 60s, detail) == reason::ok);  // within the skew
        CHECK(t->check_times(*v.cert, now + 661, 60s, detail) == reason::ca_expired);
    }
    SECTION("Sub-CA not yet valid") {
        temp_dir dir;
        made_cert sub = make_cert({"/CN=S", ca_extensions(), 600, 30L * 86400}, &valid.ica);
        write_pem(dir.file("s"), {sub.cert.get()});
        auto t = tenant_trust::load(dir.file("s"), valid.dir.file("ica.crt"), valid.dir.file("root.crt"));
        auto l = make_cert({"/CN=dev-1", device_extensions("dev-1")}, &sub);
        auto v = t->verify(l.cert.get());
        REQUIRE(v.cert);
        CHECK(t->check_times(*v.cert, now, 0s, detail) == reason::ca_expired);
        CHECK(t->check_times(*v.cert, now + 601, 0s, detail) == reason::ok);
    }
}

TEST_CASE("tenant trust: a Sub-CA or ICA revoked while the broker runs refuses its devices") {
    // The CRL state reaches the decision through the revocation snapshot, not through
    // tenant_trust: a new snapshot is swapped in by the CRL watcher and checked per connect.
    chain c;
    auto trust = c.load();
    auto leaf = c.leaf("dev-1");
    auto out = trust->verify(leaf.cert.get());
    REQUIRE(out.cert);
    const std::time_t now = std::time(nullptr);
    auto snapshot = [&](ca_role issuer, ca_role revoked) {
        verified_crl crl{"test", issuer, now - 60, now + 3600, {}};
        if (issuer != revoked) crl.revoked = std::vector<serial_key>{trust->serial(revoked)};
        return crl_set({crl}, *trust, 1);
    };
    using namespace std::chrono_literals;
    CHECK(snapshot(ca_role::ica, ca_role::ica).check(out.cert->serial, now, 60s, stale_policy::deny).why == reason::ok);
    CHECK(snapshot(ca_role::ica, ca_role::sub_ca).check(out.cert->serial, now, 60s, stale_policy::deny).why ==
          reason::ca_revoked);
    CHECK(snapshot(ca_role::root, ca_role::ica).check(out.cert->serial, now, 60s, stale_policy::deny).why ==
          reason::ca_revoked);
}
