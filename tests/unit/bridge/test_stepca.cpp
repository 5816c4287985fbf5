// The step-ca signer against the fake step-ca (tests/fakes/fake_stepca.*), in-process.
#include "csr_factory.hpp"
#include "fake_stepca.hpp"
#include "jwt.hpp"
#include "stepca_signer.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;
using namespace devicegate::bridge;
using devicegate::test::pki;

namespace {

struct stepca_fixture {
    test::temp_dir dir;
    evp_pkey_ptr provisioner_key = test::make_key("P-256");
    test::fake_stepca ca{{pki("server-chain.crt"), pki("server.key"), pki("subca-a.crt"), pki("subca-a.key"), "devicegate",
                          test::public_key_pem(provisioner_key.get()), jwk_thumbprint(provisioner_key.get()), "localhost"}};
    stepca_fixture() {
        REQUIRE(ca.start());
        test::write_file(dir.file("prov.key"), test::key_pem(provisioner_key.get()));
    }
    stepca_signer::options options(const std::string& key_file = "") const {
        stepca_signer::options o;
        o.url = ca.url();
        o.root_file = pki("root.crt");
        o.provisioner = "devicegate";
        o.key_file = key_file.empty() ? dir.file("prov.key") : key_file;
        o.sub_ca_file = pki("subca-a.crt");
        return o;
    }
};

x509_req_ptr csr_for(const std::string& cn) {
    auto key = test::make_key("P-256");
    auto r = check_csr(test::make_csr_pem(key.get(), cn), cn);
    REQUIRE(r.problem == csr_problem::ok);
    return std::move(r.csr);
}

nlohmann::json claims_of(const std::string& jwt) {
    const auto a = jwt.find('.'), b = jwt.rfind('.');
    std::string part = jwt.substr(a + 1, b - a - 1);
    for (char& c : part) c = c == '-' ? '+' : c == '_' ? '/' : c;
    while (part.size() % 4 != 0) part += '=';
    std::string out(part.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(part.data()),
                                  static_cast<int>(part.size()));
    out.resize(static_cast<std::size_t>(n));
    while (!out.empty() && out.back() == '\0') out.pop_back();
    return nlohmann::json::parse(out);
}

}  // namespace

TEST_CASE("step-ca: the one-time token's claims are step's", "[bridge][stepca]") {
    stepca_fixture f;
    stepca_signer s(f.options());
    const std::string t = s.token("/1.0/sign", "dev-1");
    auto c = claims_of(t);
    CHECK(c["iss"] == "devicegate");
    CHECK(c["sub"] == "dev-1");
    CHECK(c["aud"] == f.ca.url() + "/1.0/sign");
    CHECK(c["sans"] == nlohmann::json::array({"dev-1"}));
    CHECK(c["exp"].get<long long>() - c["iat"].get<long long>() == 300);
    CHECK(c["nbf"] == c["iat"]);
    CHECK(c["jti"].get<std::string>().size() == 64);
    CHECK(claims_of(s.token("/1.0/sign", "dev-1"))["jti"] != c["jti"]);
    CHECK(serial_hex_to_decimal("0A") == "10");
    CHECK(serial_hex_to_decimal("0100") == "256");
}

TEST_CASE("step-ca: sign and revoke through the fake; its refusals become signer errors", "[bridge][stepca]") {
    stepca_fixture f;
    stepca_signer s(f.options());
    auto issued = s.issue(csr_for("dev-1").get(), "dev-1");
    CHECK(f.ca.signed_count() == 1);
    auto cert = parse_certificates(issued.certificate_pem, "crt");
    CHECK(X509_check_host(cert[0].get(), "dev-1", 0, 0, nullptr) == 1);
    CHECK(issued.serial_hex == serial_hex(X509_get0_serialNumber(cert[0].get())));

    s.revoke(issued.serial_hex, 1);
    CHECK(f.ca.is_revoked(serial_hex_to_decimal(issued.serial_hex)));
    CHECK_THROWS_AS(s.revoke(issued.serial_hex, 1), signer_not_found);
    try {
        s.revoke(issued.serial_hex, 1);
    } catch (const signer_not_found& e) {
        CHECK(e.already_revoked);  // step-ca says "already revoked": the revoke answer lists it so
    }

    // The CN must be the token's subject (commonNameSliceValidator): 403.
    CHECK_THROWS_WITH(s.issue(csr_for("dev-2").get(), "dev-1"), Catch::Contains("HTTP 403") && Catch::Contains("common name"));
    f.ca.fail_next_sign(500);
    CHECK_THROWS_WITH(s.issue(csr_for("dev-1").get(), "dev-1"), Catch::Contains("HTTP 500"));
    // Another provisioner key: 401.
    auto stranger = test::make_key("P-256");
    test::write_file(f.dir.file("other.key"), test::key_pem(stranger.get()));
    stepca_signer wrong(f.options(f.dir.file("other.key")));
    CHECK_THROWS_WITH(wrong.issue(csr_for("dev-1").get(), "dev-1"), Catch::Contains("HTTP 401"));
    CHECK(f.ca.signed_count() == 1);
}

TEST_CASE("step-ca: a token is single use, and TLS is verified against the step-ca root", "[bridge][stepca]") {
    stepca_fixture f;
    stepca_signer s(f.options());
    auto key = test::make_key("P-256");
    const nlohmann::json body{{"csr", test::make_csr_pem(key.get(), "dev-1")}, {"ott", s.token("/1.0/sign", "dev-1")}};
    httplib::SSLClient client("localhost", f.ca.port());
    client.set_ca_cert_path(pki("root.crt").c_str());
    client.enable_server_certificate_verification(true);
    auto first = client.Post("/1.0/sign", body.dump(), "application/json");
    REQUIRE(first);
    CHECK(first->status == 201);
    auto replay = client.Post("/1.0/sign", body.dump(), "application/json");
    REQUIRE(replay);
    CHECK(replay->status == 401);
    CHECK(nlohmann::json::parse(replay->body)["message"] == "token already used");
    // A token for the revoke endpoint does not sign.
    auto wrong_aud = client.Post("/1.0/sign", nlohmann::json{{"csr", body["csr"]}, {"ott", s.token("/1.0/revoke", "dev-1")}}.dump(),
                                 "application/json");
    REQUIRE(wrong_aud);
    CHECK(wrong_aud->status == 401);

    auto o = f.options();
    o.root_file = pki("other-root.crt");
    stepca_signer untrusting(o);
    CHECK_THROWS_WITH(untrusting.issue(csr_for("dev-1").get(), "dev-1"), Catch::Contains("unreachable"));
}
