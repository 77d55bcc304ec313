/* SPDX-License-Identifier: Apache-2.0 */
/* The verbs of the quai program that live in files of their own. */
#ifndef QUAI_TOOLS_VERBS_H
#define QUAI_TOOLS_VERBS_H

/* The "Exit status" section every verb's --help ends with. */
extern const char exit_status_help[];

int cmd_stage(int argc, char **argv);

#endif
