/*
 * icount: a QEMU TCG plugin (plugin API version 1, QEMU 7.2 and later) that counts the guest instructions executed
 * between two markers the program under test sets itself, so a count covers exactly the inferences it ran.
 *
 * A marker is the system call lseek(-1, MARK + phase, SEEK_SET): it fails with EBADF on any machine, so the runner
 * can issue it unconditionally. Phase 0 starts counting (from zero), phase 1 stops and reports:
 *
 *     edgecnn-icount <instructions>            on stderr (the runner's own stderr)
 *
 * With profile=PATH, the stop also writes one line per translated block that ran in the counted region:
 * "<guest address> <instructions in the block> <executions>" (hex, dec, dec), for the host to map to symbols.
 *
 * Counting is an inline 64-bit add per executed translation block (no helper call), so it costs little and is
 * exactly reproducible for a single-threaded guest. The declarations below are the few parts of QEMU's
 * qemu-plugin.h this needs, written out so the plugin builds with nothing but a C compiler:
 *
 *     gcc -shared -fPIC -O2 -o icount.so icount.c
 *     QEMU_PLUGIN=./icount.so qemu-aarch64 ...       (or -plugin ./icount.so,profile=blocks.txt)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t; /* read by nothing here */
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
extern void qemu_plugin_register_vcpu_syscall_cb(
    qemu_plugin_id_t, void (*)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                               uint64_t, uint64_t, uint64_t, uint64_t));

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MARK 0x45444745434e4e00ULL /* "EDGECNN\0" */
#define SYS_LSEEK_AARCH64 62

struct block {
    uint64_t vaddr, insns, execs;
    struct block *next;
};

static uint64_t executed;             /* instructions of every block run since the start marker */
static struct block *blocks;          /* every translated block, when profiling */
static int profiling;
static char profile_path[4096];

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
    if (profiling) {
        struct block *b = calloc(1, sizeof *b);
        if (!b)
            return;
        b->vaddr = qemu_plugin_tb_vaddr(tb);
        b->insns = n;
        b->next = blocks;
        blocks = b;
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != SYS_LSEEK_AARCH64 || a1 != UINT64_MAX || (a2 & ~0xffULL) != MARK)
        return;
    if ((a2 & 0xff) == 0) { /* start: count from here */
        executed = 0;
        for (struct block *b = blocks; b; b = b->next)
            b->execs = 0;
        return;
    }
    fprintf(stderr, "edgecnn-icount %llu\n", (unsigned long long)executed);
    fflush(stderr);
    if (profiling) {
        FILE *out = fopen(profile_path, "w");
        if (!out)
            return;
        for (struct block *b = blocks; b; b = b->next)
            if (b->execs)
                fprintf(out, "%llx %llu %llu\n", (unsigned long long)b->vaddr, (unsigned long long)b->insns,
                        (unsigned long long)b->execs);
        fclose(out);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "profile=", 8) == 0 && strlen(argv[i] + 8) < sizeof profile_path) {
            strcpy(profile_path, argv[i] + 8);
            profiling = 1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
