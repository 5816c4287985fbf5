#pragma once
// The signature of a CRL checked on its raw DER, before OpenSSL decodes its entries.
// d2i_X509_CRL turns every entry into heap objects (~200 bytes each, ~8x the DER), so a
// large unsigned or forged body would cost that memory before X509_CRL_verify could refuse
// it. Here only the outer structure and the issuer name are decoded: the signature over the
// tbsCertList bytes (RFC 5280 section 5.1) is verified against the configured CA of that name.
#include "devicegate/tenant_trust.hpp"

#include <string_view>

namespace devicegate {

/// Checks every CRL in `data` (PEM blocks or one DER CRL). Throws pki_error naming `source`
/// when a CRL names none of the configured CAs or its signature does not verify. Input whose
/// structure or signature algorithm this check does not handle (garbage, RSA-PSS) passes:
/// the full parse and X509_CRL_verify that follow refuse or accept it.
void precheck_crl_signatures(std::string_view data, std::string_view source, const tenant_trust& trust);

}  // namespace devicegate
