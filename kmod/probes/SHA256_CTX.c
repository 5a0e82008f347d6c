// SPDX-License-Identifier: GPL-2.0
/* Does the SHA-256 library hash into a struct sha256_ctx (6.17), or a struct sha256_state? */
#include <crypto/sha2.h>

void lxbsm_probe(struct sha256_ctx *ctx, const u8 *data, unsigned int len, u8 *out);
void lxbsm_probe(struct sha256_ctx *ctx, const u8 *data, unsigned int len, u8 *out)
{
	sha256_init(ctx);
	sha256_update(ctx, data, len);
	sha256_final(ctx, out);
}
