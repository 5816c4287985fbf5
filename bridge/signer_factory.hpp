#pragma once
// The signer the configuration names.
#include "bridge_config.hpp"
#include "signer.hpp"

#include <memory>

namespace devicegate::bridge {

/// Throws signer_error / std::runtime_error naming the setting or file that failed.
std::shared_ptr<signer> make_signer(const bridge_config& config);

}  // namespace devicegate::bridge
