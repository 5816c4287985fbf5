#include "signer_factory.hpp"

#include "embedded_ca.hpp"
#include "stepca_signer.hpp"

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
    stepca_signer::options o;
    o.url = config.stepca.url;
    o.root_file = config.stepca.root_file;
    o.provisioner = config.stepca.provisioner;
    o.key_file = config.stepca.key_file;
    o.kid = config.stepca.kid;
    o.sub_ca_file = config.sub_ca_file;
    return std::make_shared<stepca_signer>(o);
}

}  // namespace devicegate::bridge
