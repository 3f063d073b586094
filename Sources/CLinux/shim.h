#ifndef GUARDIAN_CLINUX_SHIM_H
#define GUARDIAN_CLINUX_SHIM_H

// glibc functions that Swift's Glibc module leaves out because its headers
// declare them only under _GNU_SOURCE / __USE_MISC (and a module is built
// once, so defining _GNU_SOURCE here would not reach them). The prototypes
// are glibc's own (glibc >= 2.34; Debian 12 has 2.36); the symbols come from
// libc itself, so nothing extra is linked.

#include <fcntl.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/xattr.h>  // fgetxattr/fsetxattr: POSIX ACLs kept across log rotation
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/// pipe(2) with flags (O_CLOEXEC): no window in which another thread's
/// fork/exec could inherit the pipe.
extern int pipe2(int pipefd[2], int flags);

/// Closes every descriptor >= `from` in the child before exec.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

/// glibc's heap statistics (<malloc.h>, glibc >= 2.33), declared here so as
/// not to pull <malloc.h> into the module: what the tests read to show that
/// compaction's memory stays bounded.
struct mallinfo2 {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
extern struct mallinfo2 mallinfo2(void);

/// glibc's malloc tuning (<malloc.h>): MemoryPolicy caps the arenas, fixes
/// the mmap and trim thresholds, and gives free heap pages back after a burst.
extern int mallopt(int param, int value);
extern int malloc_trim(size_t pad);
static const int clinux_M_TRIM_THRESHOLD = -1;
static const int clinux_M_MMAP_THRESHOLD = -3;
static const int clinux_M_ARENA_MAX = -8;

/// O_DIRECT (defined by <fcntl.h> only under _GNU_SOURCE; __O_DIRECT always):
/// writes that go around the page cache (DirectWrites).
static inline int clinux_o_direct(void) { return __O_DIRECT; }

/// copy_file_range(2) (<unistd.h> under _GNU_SOURCE): copies between two
/// files in the kernel (DurableFile.copyAll).
extern ssize_t copy_file_range(int infd, __off64_t *pinoff, int outfd, __off64_t *poutoff, size_t len, unsigned int flags);

/// The calling thread's own filesystem credentials, by raw system calls:
/// glibc's setgroups() (like setuid/setgid) changes every thread of the
/// process; the kernel calls change only the calling one. setfsuid and
/// setfsgid return the previous id (pass (uid_t)-1 to only read it).
static inline long guardian_thread_setfsuid(uid_t uid) { return syscall(SYS_setfsuid, uid); }
static inline long guardian_thread_setfsgid(gid_t gid) { return syscall(SYS_setfsgid, gid); }
static inline long guardian_thread_setgroups(size_t count, const gid_t *list) {
    return syscall(SYS_setgroups, count, list);
}

#endif
