import CLinux
import Foundation

/// Large aligned writes that go around the page cache (O_DIRECT), for a
/// file as large as the database written once in big sequential blocks and
/// not read back right away: a restore's output without an integrity check.
/// (Not the staging files of full images, nor a copy an integrity check
/// reads next: reading an uncached file back cost more here than writing it
/// through the page cache.)
///
/// Why: on the Firecracker VM of the benchmarks (free page reporting on),
/// every page-cache page of a new file lands on guest memory the host has
/// taken back, and the first touch of each costs a host fault: a buffered
/// 1 GB write took 7 s there (2 s of it system time), 0.5–0.9 s with O_DIRECT
/// in 4 MiB blocks. On ordinary hardware direct writes of that size run at
/// the disk's speed and spare the page cache a copy.
///
/// Opened as a second description of a file already open (through
/// `/proc/self/fd`, so the same inode whatever happened to its path); the
/// caller keeps its own descriptor for small or unaligned writes, the final
/// `fsync` and `ftruncate`. The kernel keeps the two coherent (a direct
/// write flushes and drops cached pages of its range first). A file system
/// that refuses O_DIRECT (at open or with EINVAL on a write) turns it off:
/// the caller then writes those bytes through the page cache.
public final class DirectWrites: @unchecked Sendable {
    /// Buffer addresses, offsets and lengths of direct writes are multiples of this.
    public static let alignment = 4096
    /// Writes below this size go through the page cache.
    public static let minimumBytes = 64 << 10

    public let path: String
    private var fd: Int32

    /// A direct-write descriptor for the file open at `fd`, or nil when the
    /// file system (or `/proc`) does not allow one.
    public init?(reopening descriptor: Int32, path: String) {
        self.path = path
        fd = open("/proc/self/fd/\(descriptor)", O_WRONLY | clinux_o_direct() | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var a = stat()
        var b = stat()
        guard fstat(fd, &a) == 0, fstat(descriptor, &b) == 0, a.st_dev == b.st_dev, a.st_ino == b.st_ino else {
            Foundation.close(fd)
            return nil
        }
    }

    deinit { close() }

    /// Whether direct writes are (still) on.
    public var isOn: Bool { fd >= 0 }

    public func close() {
        if fd >= 0 { Foundation.close(fd) }
        fd = -1
    }

    /// Writes `count` bytes at `offset` directly when they suit (alignment,
    /// size) and returns how many it wrote: all of them, or 0 when they do not
    /// suit (or the file system refused), or fewer after a short write that
    /// broke the alignment. The caller writes the rest through the page cache.
    public func write(_ base: UnsafeRawPointer, _ count: Int, at offset: off_t) throws -> Int {
        let a = Self.alignment
        guard fd >= 0, count >= Self.minimumBytes, count % a == 0, Int(offset) % a == 0, Int(bitPattern: base) % a == 0 else {
            return 0
        }
        var done = 0
        while done < count {
            let n = pwrite(fd, base + done, count - done, offset + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL, done == 0 {
                    // This file system does not do direct I/O after all.
                    close()
                    return 0
                }
                throw SystemError("pwrite", path: path)
            }
            done += n
            if n == 0 || n % a != 0 { return done }
        }
        return done
    }
}
