import Foundation
import Testing
@testable import Platform
@testable import Remediate

/// /proc files are read whole. `String(contentsOfFile:)` returned the first
/// 4 KiB of /proc/locks (76 lines on this host with a few thousand locks
/// held by other processes), so the check before a quarantine missed the
/// application's lock whenever the host held more than a page of locks.
@Suite(.serialized) struct ProcFilesTests {
    @Test func aLockHeldAmongHundredsIsFoundInProcLocks() throws {
        let dir = try TestSupport.makeTempDir("proc-locks")
        defer { TestSupport.cleanup(dir) }
        // 300 locks of this process: /proc/locks is well past one page.
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        var inodes: Set<[UInt64]> = []
        for i in 0..<300 {
            let fd = open("\(dir)/f\(i)", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            #expect(fd >= 0)
            #expect(flock(fd, LOCK_EX) == 0)
            fds.append(fd)
            var st = stat()
            fstat(fd, &st)
            inodes.insert([UInt64(st.st_dev), UInt64(st.st_ino)])
        }
        let text = try #require(ProcFiles.text("/proc/locks"))
        #expect(text.utf8.count > 4096 * 3)
        // Every one of them is found, as the holder check looks for them.
        let found = Set(inodes.filter { OpenFiles.lockHolders(in: text, targets: [$0]).contains(getpid()) }.map { $0 })
        #expect(found.count == inodes.count, "\(found.count) of \(inodes.count) locks found")
    }

    @Test func procFilesAreReadToTheirEnd() throws {
        let status = try #require(ProcFiles.text("/proc/self/status"))
        #expect(status.contains("VmRSS:") && status.hasSuffix("\n"))
        #expect(ProcFiles.text("/proc/self/no-such-file") == nil)
    }
}
