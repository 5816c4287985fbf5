#include "csr_check.hpp"
#include "csr_factory.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::bridge;
using devicegate::test::csr_spec;
using devicegate::test::make_csr_pem;
using devicegate::test::make_key;

TEST_CASE("CSR check: the allowed key types pass and report their type", "[bridge][csr]") {
    for (std::string type : {"P-256", "P-384", "RSA-2048", "Ed25519"}) {
        auto key = make_key(type);
        auto r = check_csr(make_csr_pem(key.get(), "dev-1"), "dev-1");
        INFO(type << ": " << r.detail);
        CHECK(r.problem == csr_problem::ok);
        CHECK(r.key_type == type);
        CHECK(r.csr != nullptr);
    }
}

TEST_CASE("CSR check: weak or unsupported keys are refused", "[bridge][csr]") {
    for (std::string type : {"RSA-1024", "P-521", "secp256k1"}) {
        auto key = make_key(type);
        auto r = check_csr(make_csr_pem(key.get(), "dev-1"), "dev-1");
        INFO(type);
        CHECK(r.problem == csr_problem::weak_key);
        CHECK_THAT(r.detail, Catch::Contains("P-256"));
        CHECK(r.csr == nullptr);
    }
}

TEST_CASE("CSR check: a CSR signed by another key proves nothing", "[bridge][csr]") {
    auto key = make_key("P-256");
    auto other = make_key("P-256");
    auto r = check_csr(make_csr_pem(key.get(), csr_spec{{{"CN", "dev-1"}}, {}}, other.get()), "dev-1");
    CHECK(r.problem == csr_problem::bad_signature);
}

TEST_CASE("CSR check: the subject must be exactly CN=<device id>", "[bridge][csr]") {
    auto key = make_key("P-256");
    CHECK(check_csr(make_csr_pem(key.get(), "dev-2"), "dev-1").problem == csr_problem::cn_mismatch);
    CHECK(check_csr(make_csr_pem(key.get(), csr_spec{{{"CN", "dev-1"}, {"O", "x"}}, {}}), "dev-1").problem ==
          csr_problem::bad_subject);
    CHECK(check_csr(make_csr_pem(key.get(), csr_spec{{{"CN", "dev-1"}, {"CN", "dev-1"}}, {}}), "dev-1").problem ==
          csr_problem::bad_subject);
    CHECK(check_csr(make_csr_pem(key.get(), csr_spec{{{"O", "dev-1"}}, {}}), "dev-1").problem == csr_problem::bad_subject);
    CHECK(check_csr(make_csr_pem(key.get(), csr_spec{{}, {}}), "dev-1").problem == csr_problem::bad_subject);
}

TEST_CASE("CSR check: not exactly one PEM CSR is refused", "[bridge][csr]") {
    auto key = make_key("P-256");
    const std::string good = make_csr_pem(key.get(), "dev-1");
    CHECK(check_csr("", "dev-1").problem == csr_problem::not_pem);
    CHECK(check_csr("garbage", "dev-1").problem == csr_problem::not_pem);
    CHECK(check_csr(good + good, "dev-1").problem == csr_problem::not_pem);
    std::string broken = good;
    broken[broken.size() / 2] = '!';
    CHECK(check_csr(broken, "dev-1").problem == csr_problem::not_pem);
    CHECK(check_csr(std::string(20000, 'A'), "dev-1").problem == csr_problem::not_pem);
    CHECK(csr_common_name(check_csr(good, "dev-1").csr.get()) == "dev-1");
}

TEST_CASE("CSR check: an EC key with explicit curve parameters is refused by name", "[bridge][csr]") {
    auto key = devicegate::test::make_explicit_p256_key();
    CHECK(has_explicit_ec_parameters(key.get()));
    auto r = check_csr(make_csr_pem(key.get(), "dev-1"), "dev-1");
    CHECK(r.problem == csr_problem::explicit_ec_parameters);
    CHECK(to_string(r.problem) == "csr_key_explicit_parameters");
    CHECK_THAT(r.detail, Catch::Contains("explicit curve parameters") && Catch::Contains("named curve"));
    CHECK(r.csr == nullptr);
    CHECK(allowed_key_type(key.get()).empty());
    for (std::string type : {"P-256", "P-384", "RSA-2048", "Ed25519"}) CHECK_FALSE(has_explicit_ec_parameters(make_key(type).get()));
}
