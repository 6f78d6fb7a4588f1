/*
 * cmd_keygen.c: `meridianctl keygen --out FILE`, which makes an Ed25519 key
 * pair (libsodium crypto_sign), writes the secret key to FILE (mode 0600,
 * never over an existing file) and prints the public key.
 *
 * The same kind of key serves the admin (it signs topologies) and each node
 * (its identity in the topology, and later on its secure links, where it is
 * converted to X25519). The public key goes to stdout alone, so a script
 * can take it with $(...) and hand it to `topology add-node --public-key`.
 */
#include "ctl.h"

#include <sodium.h>

int
ctl_cmd_keygen(const struct ctl_args *args, mrd_client *client)
{
    uint8_t pk[CTL_PUBLIC_KEY_SIZE], sk[CTL_SECRET_KEY_SIZE];
    char    pk_hex[CTL_PUBLIC_KEY_SIZE * 2 + 1];

    (void) client;
    if (args->out_path == NULL) {
        return ctl_fail_usage("keygen: --out FILE is required");
    }
    if (sodium_init() < 0) {
        return ctl_fail_mrd(MRD_EINTERNAL, "initialise libsodium");
    }
    crypto_sign_keypair(pk, sk);
    int rv = ctl_key_write(args->out_path, sk);
    sodium_memzero(sk, sizeof(sk));
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    sodium_bin2hex(pk_hex, sizeof(pk_hex), pk, sizeof(pk));
    if (args->json) {
        return ctl_json_print(json_pack("{s:s, s:s}", "public_key", pk_hex,
            "secret_key_file", args->out_path));
    }
    printf("%s\n", pk_hex);
    return ctl_stdout_flush();
}
