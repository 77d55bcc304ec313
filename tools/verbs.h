/* SPDX-License-Identifier: Apache-2.0 */
/* The verbs of the quai program that live in files of their own. */
#ifndef QUAI_TOOLS_VERBS_H
#define QUAI_TOOLS_VERBS_H

#include <stdbool.h>
#include <stddef.h>

/* The "Exit status" section every verb's --help ends with. */
extern const char exit_status_help[];

int cmd_stage(int argc, char **argv);
/* tools/xfer_cmd.c */
int cmd_push(int argc, char **argv);
/* A quai:// URI naming a dataset, checked as every verb checks it: 0, or
 * the usage error (status 2) after saying what is wrong with it. */
int cli_check_dataset_uri(const char *verb, const char *uri);
int cmd_pull(int argc, char **argv);
/* tools/remote_cmd.c */
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
/* tools/audit_cmd.c */
int cmd_audit(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
/* tools/label_cmd.c */
int cmd_sign(int argc, char **argv);
/* Signs the dataset at path with the secret key file key (quai sign,
 * quai pack --sign-key); prints what was signed. 0, or the exit status
 * with the reason on stderr, verb naming the command. */
int label_sign(const char *verb, const char *path, const char *key, bool replace, bool quiet);
/* 0 when key is a usable secret key file, else the exit status, said. */
int label_key_usable(const char *verb, const char *key);
/* quai verify's signature check: 0 when it holds (or is absent and not
 * required), with the status line to print into line; else the exit
 * status, with the reason on stderr. */
int label_report(const char *path, const char *keys_spec, bool require, char *line, size_t len);

#endif
