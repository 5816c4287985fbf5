// devicegate-ctl enroll-token | wg-peers: the operator's side of the enrollment API
// (bridge/): one-time enrollment tokens and the WireGuard gateway's peer list.
#include "command.hpp"
#include "ctl.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/duration.hpp"
#include "enroll_tokens.hpp"
#include "wireguard.hpp"

namespace devicegate::ctl {

const char* const enrollment_usage =
    R"(  enroll-token DEVICE-ID [--ttl 24h]           print a one-time enrollment token bound to the device
                                               (the device sends it as Authorization: Bearer; 1m..720h)
  wg-peers                                     print the WireGuard gateway's [Peer] list (wg-ready)
)";

namespace {

int enroll_token(const arguments& args, session& s) {
    if (args.words.size() != 2) throw usage_error("enroll-token needs exactly one device id");
    const std::string& id = args.words[1];
    if (!is_safe_device_id(id)) {
        throw usage_error("\"" + id + "\" is not a device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})");
    }
    std::chrono::milliseconds ttl = bridge::default_token_ttl;
    if (const std::string* text = args.value("--ttl")) {
        try {
            ttl = parse_duration_in(*text, std::chrono::minutes(1), bridge::max_token_ttl);
        } catch (const value_error&) {
            throw usage_error("--ttl needs a duration from 1m to 720h, such as 30m or 24h");
        }
    }
    s.out() << bridge::create_enroll_token(s.redis(), s.model(), id, ttl) << "\n";
    return ok;
}

int wg_peers(const arguments& args, session& s) {
    if (args.words.size() != 1) throw usage_error("wg-peers takes no arguments");
    s.out() << bridge::peers_file(s.redis(), bridge::wireguard_keys(s.model()));
    return ok;
}

}  // namespace

const command enrollment_commands[2] = {{"enroll-token", enroll_token}, {"wg-peers", wg_peers}};

}  // namespace devicegate::ctl
