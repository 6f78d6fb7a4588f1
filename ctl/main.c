/*
 * main.c: meridianctl's entry point.
 *
 * Parses the command line, opens one client on the nodes it names, runs the
 * command and closes the client. The client dials in the background, so
 * opening it cannot fail for want of a node: an unreachable node shows up as
 * the command's own error (MRD_EUNAVAIL or MRD_ETIMEDOUT), reported with what
 * the command was doing.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

#include "topo.h"

/* The command line lives as long as the process, and struct ctl_args is big
 * (meta keys are copied into it): keep it off the stack. */
static struct ctl_args ctl_main_args;

int
ctl_client_open(const struct ctl_args *args, mrd_client **client_out)
{
    mrd_client_opts opts;

    mrd_client_opts_init(&opts);
    opts.addresses     = args->nodes;
    opts.address_count = args->node_count;
    opts.key_file      = args->key_file;
    opts.keyring_file  = args->keyring_file;
    opts.region        = args->home_region != NULL ? args->home_region
                                                   : getenv("MERIDIAN_REGION");
    if (args->timeout_ms != 0) {
        opts.timeout_ms = args->timeout_ms;
        /* One attempt may not outlive the whole call. */
        if (opts.attempt_timeout_ms > args->timeout_ms) {
            opts.attempt_timeout_ms = args->timeout_ms;
        }
    }
    if (opts.region != NULL && opts.region[0] != '\0'
        && !topo_name_valid(opts.region, strlen(opts.region))) {
        return ctl_fail_usage("--home-region (or MERIDIAN_REGION): '%s' is "
                              "not a region name (1..63 of a-z, 0-9, '-')",
            opts.region);
    }
    int rv = mrd_client_open(&opts, client_out);
    if (rv != MRD_OK) {
        return ctl_fail_mrd(rv, "open client for %s%s", args->nodes[0],
            args->node_count > 1 ? " and others" : "");
    }
    return CTL_EXIT_OK;
}

int
main(int argc, char **argv)
{
    struct ctl_args *args   = &ctl_main_args;
    mrd_client      *client = NULL;

    int rv = ctl_args_parse(args, argc, argv);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (args->help) {
        ctl_help_print(stdout, args->cmd);
        return ctl_stdout_flush();
    }
    if (args->version) {
        printf("meridianctl %s\n", MRD_VERSION_STRING);
        return ctl_stdout_flush();
    }
    MRD_ASSERT(args->cmd != NULL && args->cmd->run != NULL);
    MRD_ASSERT(args->node_count >= 1);
    if (!args->cmd->offline) {
        rv = ctl_client_open(args, &client);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
    }
    rv = args->cmd->run(args, client);
    mrd_client_close(client);
    /* A command that failed has said so; one that succeeded has not
     * succeeded until its output is out. */
    int flushed = ctl_stdout_flush();
    return rv != CTL_EXIT_OK ? rv : flushed;
}
