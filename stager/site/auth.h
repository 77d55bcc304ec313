/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MUNGE authentication of quaid sessions (docs/SECURITY.md,
 * docs/PROTOCOL.md "Authentication"). Private to the library.
 *
 * The client asks its local munged for a credential whose payload binds
 * it to one connection:
 *
 *     "QUAI-MUNGE-1" (12 bytes)
 *     u16 length + the client's fabric address (as in its HELLO)
 *     u16 length + the server's fabric address (as the client resolved it)
 *     16 random bytes
 *
 * (integers little-endian) and sends it in HELLO with auth_kind "munge".
 * quaid decodes it with its own munged: MUNGE checks the MAC, the TTL and
 * that the credential was never decoded before (replay); quaid checks that
 * the payload names the address the HELLO came with and quaid's own
 * address. The credential then gives the client's uid and gid and the
 * address of the host that made it.
 */
#ifndef QUAI_STAGER_AUTH_H
#define QUAI_STAGER_AUTH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define QAUTH_KIND_MUNGE "munge"
#define QAUTH_GROUPS_MAX 64

/* The munged socket a client uses: $QUAI_MUNGE_SOCKET when set and not
 * empty (ignored in setuid programs), else the `munge_socket` key of the
 * host configuration (quai.conf), else NULL (libmunge's default,
 * /run/munge/munge.socket.2). Writes it to buf. Returns 0 (buf "" for the
 * default) or the host configuration's error with err (-QUAI_EFORMAT also
 * for a munge_socket that is not an absolute path of a socket's length);
 * -ERANGE when buf is too small. */
int qauth_client_socket(char *buf, size_t len, char *err, size_t err_len);

/* Client: makes a credential bound to (client_addr, server_addr), each at
 * most 65535 bytes. socket: NULL or "" for libmunge's default. Returns 0
 * and *ret (a NUL-terminated base64 string, free() it); -ECONNREFUSED
 * when munged cannot be reached, whatever the cause (no socket, daemon
 * stopped), with err "cannot reach munged at SOCKET: " and MUNGE's words
 * ("Failed to access "/run/munge/munge.socket.2": No such file or
 * directory (Did you start munged?)"); -EINVAL, -ENOMEM, -EIO (another
 * MUNGE error, named in err). *ret is untouched on failure. Thread-safe. */
int qauth_munge_encode(const char *socket, const void *client_addr, size_t client_len,
		       const void *server_addr, size_t server_len, char **ret, char *err,
		       size_t err_len);
/* The same with a time to live of ttl seconds (0: munged's default, 300
 * s unless configured otherwise): for tests of expiry. */
int qauth_munge_encode_ttl(const char *socket, const void *client_addr, size_t client_len,
			   const void *server_addr, size_t server_len, int ttl, char **ret,
			   char *err, size_t err_len);

/* Who a credential says the client is. */
struct qauth_identity {
	uint32_t uid, gid;
	char user[64];			 /* from getpwuid_r; "" when the uid has no name here */
	char group[64];			 /* from getgrgid_r; "" likewise */
	uint32_t gids[QAUTH_GROUPS_MAX]; /* gid first, then the user's
					    supplementary groups (getgrouplist) */
	unsigned ngids;
	struct sockaddr_storage addr; /* the origin address of the credential */
	char addr_text[64];	      /* that address as text */
	uint64_t encode_time, ttl;    /* seconds, as MUNGE reports them */
};

/* Server: decodes and checks a credential from a HELLO that came with
 * client_addr, for a server whose own fabric address is server_addr.
 * Returns 0 and *id; -EACCES with err naming the fault without revealing
 * anything of the server: "credential expired", "credential replayed",
 * "credential invalid (forged or made with another key)", "credential
 * made for another connection", "credential made for another server";
 * "credential rewound (...)", "credential unauthorized (...)",
 * "credential malformed: ..." likewise; -ECONNREFUSED when quaid's own
 * munged cannot be reached (err says so: quaid logs it; the client is told
 * only that authentication failed); -EINVAL, -ENOMEM, -EIO. *id is
 * written only on success. Thread-safe (a MUNGE context per call). */
int qauth_munge_decode(const char *socket, const void *cred, size_t cred_len,
		       const void *client_addr, size_t client_len, const void *server_addr,
		       size_t server_len, struct qauth_identity *id, char *err, size_t err_len);

/* The check of a decoded payload, for tests and fuzzing: the layout
 * above exactly (magic, both lengths within the payload, 16 random bytes,
 * nothing after), client equal to the payload's client address byte for
 * byte, and server matching the payload's server address: when both are a
 * sockaddr_in or sockaddr_in6 (by length and family), the same port and
 * the same address (an IPv4 address and its IPv4-mapped IPv6 form are the
 * same), and when server's is a wildcard (0.0.0.0, ::), an address this
 * host listens on there (loopback, or an interface's address as
 * getifaddrs() tells at each call); otherwise byte for byte. Returns 0,
 * or -EACCES with err "credential made for another connection",
 * "credential made for another server" or "credential malformed: ..."
 * (what is wrong with the layout). */
int qauth_payload_check(const void *payload, size_t len, const void *client, size_t clen,
			const void *server, size_t slen, char *err, size_t err_len);

#endif /* QUAI_STAGER_AUTH_H */
