#include "signer_factory.hpp"

#include "embedded_ca.hpp"

#include <chrono>

namespace devicegate::bridge {

std::shared_ptr<signer> make_signer(const bridge_config& config) {
    using std::chrono::duration_cast;
    using std::chrono::seconds;
    if (config.signer == signer_kind::embedded) {
        embedded_ca::options o;
        o.ca_cert_file = config.sub_ca_file;
        o.ca_key_file = config.ca_key_file;
        o.state_dir = config.state_dir;
        o.profile.validity = duration_cast<seconds>(config.cert_validity);
        o.crl_validity = duration_cast<seconds>(config.crl_validity);
        return std::make_shared<embedded_ca>(o);
    }
    throw signer_error("signer: stepca is not available in this build");
}

}  // namespace devicegate::bridge
