#pragma once
// Stable reason codes. They are logged, counted and asserted in tests, and documented
// in README.md; renaming one is a breaking change for operators' alerting.
#include <cstdint>
#include <string_view>

namespace devicegate {

enum class reason : std::uint8_t {
    ok,
    no_certificate,      // the client presented no certificate (listener without require_certificate)
    bad_certificate,     // the certificate could not be parsed or encoded
    self_signed,         // the leaf is self-signed
    wrong_issuer,        // not issued by this tenant's Sub-CA (another tenant, or an unknown CA)
    chain_invalid,       // X509_verify_cert refused the chain leaf -> Sub-CA -> ICA -> Root
    not_end_entity,      // the leaf is itself a CA certificate
    expired,             // leaf notAfter + clock skew is in the past
    not_yet_valid,       // leaf notBefore - clock skew is in the future
    ca_expired,          // a configured CA certificate is outside its validity
    wrong_eku,           // the leaf has an extendedKeyUsage without clientAuth
    bad_device_id,       // CN missing, repeated, unsafe alphabet, too long, or a DNS SAN disagrees
    client_id_mismatch,  // the MQTT client id is not the certificate's device id
    revoked_crl,         // the leaf serial is on the Sub-CA's CRL
    ca_revoked,          // the Sub-CA (on the ICA's CRL) or the ICA (on the Root's CRL) is revoked
    crl_stale,           // a CRL is past nextUpdate + grace and crl_stale_policy is deny
    revoked_ocsp,        // the OCSP responder says the certificate is revoked
    ocsp_unknown,        // the OCSP responder does not know the certificate
    ocsp_pending,        // ocsp hard: no OCSP answer cached yet (the fetch has started)
    revoked_denylist,    // the device id or serial is on the Redis deny-list
    denylist_stale,      // Redis unreachable longer than denylist_grace and denylist_stale_policy is deny
    not_authenticated,   // an ACL check for a client the plugin never admitted (plugin bypassed)
    acl_denied,          // publish/subscribe outside the device's topics
    internal_error,      // an unexpected failure; the connect is refused (fail closed)
    session_taken_over,  // kick: a newer session of the device on another broker (fleet registry)
    clone_refused,       // kick: two sessions from different addresses, clone_policy refuse
    count_
};

std::string_view to_string(reason r) noexcept;

}  // namespace devicegate
