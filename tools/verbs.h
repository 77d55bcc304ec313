/* SPDX-License-Identifier: Apache-2.0 */
/* The verbs of the quai program that live in files of their own. */
#ifndef QUAI_TOOLS_VERBS_H
#define QUAI_TOOLS_VERBS_H

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

#endif
