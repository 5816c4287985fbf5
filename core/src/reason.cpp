#include "devicegate/reason.hpp"

namespace devicegate {

std::string_view to_string(reason r) noexcept {
    switch (r) {
        case reason::ok: return "ok";
        case reason::no_certificate: return "no_certificate";
        case reason::bad_certificate: return "bad_certificate";
        case reason::self_signed: return "self_signed";
        case reason::wrong_issuer: return "wrong_issuer";
        case reason::chain_invalid: return "chain_invalid";
        case reason::not_end_entity: return "not_end_entity";
        case reason::expired: return "expired";
        case reason::not_yet_valid: return "not_yet_valid";
        case reason::ca_expired: return "ca_expired";
        case reason::wrong_eku: return "wrong_eku";
        case reason::bad_device_id: return "bad_device_id";
        case reason::client_id_mismatch: return "client_id_mismatch";
        case reason::revoked_crl: return "revoked_crl";
        case reason::ca_revoked: return "ca_revoked";
        case reason::crl_stale: return "crl_stale";
        case reason::revoked_ocsp: return "revoked_ocsp";
        case reason::ocsp_unknown: return "ocsp_unknown";
        case reason::ocsp_pending: return "ocsp_pending";
        case reason::revoked_denylist: return "revoked_denylist";
        case reason::denylist_stale: return "denylist_stale";
        case reason::not_authenticated: return "not_authenticated";
        case reason::acl_denied: return "acl_denied";
        case reason::internal_error: return "internal_error";
        case reason::session_taken_over: return "session_taken_over";
        case reason::clone_refused: return "clone_refused";
        case reason::count_: break;
    }
    return "unknown";
}

}  // namespace devicegate
