import CLinux
import Foundation

/// An error from a system call, with the path it concerned.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
    }

    public var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}

/// Crash-safe file writes: temp file → fsync → rename → fsync of the directory.
/// After `write` returns, the file exists under its final name with its full
/// content, or (if the machine died before) not at all.
public enum DurableFile {
    /// `syncDirectory: false` leaves the directory's fsync to the caller (one
    /// for several files written in a row); the file is not durable before it.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644, mtime: Date? = nil, syncDirectory sync: Bool = true) throws {
        let tmp = path + ".tmp"
        // A leftover (or planted) temp file is removed, never followed: a
        // symbolic link there is unlinked itself, and the new file is created
        // exclusively.
        var fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0, errno == EEXIST {
            unlink(tmp)
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        guard fd >= 0 else { throw SystemError("open", path: tmp) }
        do {
            try writeAll(fd: fd, bytes, path: tmp)
            guard fsync(fd) == 0 else { throw SystemError("fsync", path: tmp) }
            if let mtime { try setMTime(fd: fd, mtime, path: tmp) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let err = SystemError("rename", path: path)
            unlink(tmp)
            throw err
        }
        if sync { try syncDirectory((path as NSString).deletingLastPathComponent) }
    }

    /// Whether `new` is `old` with only some ASCII digits changed (same
    /// length, the same bytes everywhere else): a rewrite of one into the
    /// other that is torn, in any pattern, still leaves digits where digits
    /// were, and the same structure around them.
    public static func differOnlyInDigits(_ old: [UInt8], _ new: [UInt8]) -> Bool {
        guard old.count == new.count else { return false }
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        for (a, b) in zip(old, new) where a != b {
            guard digits.contains(a), digits.contains(b) else { return false }
        }
        return true
    }

    /// Writes `bytes` over the file at `path` in place, without an fsync,
    /// when it is a plain file of one link holding exactly `expected` (and
    /// `bytes` is as long); false, having written nothing, otherwise.
    public static func overwriteInPlace(_ bytes: [UInt8], at path: String, expected: [UInt8]) throws -> Bool {
        guard bytes.count == expected.count else { return false }
        let fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1, Int(st.st_size) == expected.count else { return false }
        var now = [UInt8](repeating: 0, count: expected.count)
        let n = now.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n == expected.count, now == expected else { return false }
        try bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let w = pwrite(fd, base + offset, raw.count - offset, off_t(offset))
                if w < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("pwrite", path: path)
                }
                offset += w
            }
        }
        return true
    }

    /// Replaces the small file at `path` (which must exist) with `bytes`
    /// as atomically as `write`, reusing inodes instead of making one per
    /// call: the new content goes into `spare` (kept from the call before)
    /// and is made durable, the old file is kept under `held`, `spare` is
    /// renamed over `path`, and the old inode becomes the next spare. No
    /// inode is allocated or freed once the spare exists (on ext4 without a
    /// journal, finding a free inode past recently deleted ones was most of
    /// the cost of a thousand databases' lease renewals). The rename is not
    /// made durable (no directory fsync): a crash leaves the old content or
    /// the new, each complete. `spare` and `held` are in `path`'s directory.
    public static func replaceReusingInode(_ bytes: [UInt8], at path: String, spare: String, held: String, mode: mode_t = 0o644) throws {
        // A spare that is not a plain file of one link (a leftover of
        // something else, or planted) is removed, never written through.
        var fd = open(spare, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode)
        var st = stat()
        if fd >= 0, fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG || st.st_nlink != 1 {
            close(fd)
            fd = -1
        }
        if fd < 0 {
            unlink(spare)
            fd = open(spare, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        guard fd >= 0 else { throw SystemError("open", path: spare) }
        do {
            try writeAll(fd: fd, bytes, path: spare)
            guard ftruncate(fd, off_t(bytes.count)) == 0 else { throw SystemError("ftruncate", path: spare) }
            guard fdatasync(fd) == 0 else { throw SystemError("fdatasync", path: spare) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        unlink(held)
        guard link(path, held) == 0 else { throw SystemError("link", path: path) }
        guard rename(spare, path) == 0 else {
            let err = SystemError("rename", path: path)
            unlink(held)
            throw err
        }
        // The old file is the next call's spare (a failure here only costs
        // the next call a new inode).
        if rename(held, spare) != 0 { unlink(held) }
    }

    public static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(fd, base + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: path)
                }
                offset += n
            }
        }
    }

    /// Copies the rest of `input` (from its offset) to `output` (at its
    /// offset): in the kernel with copy_file_range(2) where the file systems
    /// allow it (no copy through user space; a reflink where supported),
    /// else through a 1 MiB buffer. Does not fsync.
    public static func copyAll(from input: Int32, source: String, to output: Int32, target: String) throws {
        while true {
            let n = copy_file_range(input, nil, output, nil, 1 << 30, 0)
            if n > 0 { continue }
            if n == 0 { return }
            let e = errno
            if e == EINTR { continue }
            // Across file systems (older kernels), or one that cannot: copy by hand.
            guard [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(e) else { throw SystemError("copy_file_range", path: target, code: e) }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: source)
            }
            if n == 0 { return }
            try buffer.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                var offset = 0
                while offset < n {
                    let w = Foundation.write(output, base + offset, n - offset)
                    if w < 0 {
                        if errno == EINTR { continue }
                        throw SystemError("write", path: target)
                    }
                    offset += w
                }
            }
        }
    }

    /// pwrite(2) until all `count` bytes are written at `offset`.
    public static func pwriteAll(fd: Int32, _ base: UnsafeRawPointer, _ count: Int, at offset: off_t, path: String) throws {
        var done = 0
        while done < count {
            let n = pwrite(fd, base + done, count - done, offset + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("pwrite", path: path)
            }
            done += n
        }
    }

    public static func setMTime(fd: Int32, _ date: Date, path: String) throws {
        let seconds = date.timeIntervalSince1970
        var times = [timespec](repeating: timespec(), count: 2)
        times[0] = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT: leave atime alone
        let whole = floor(seconds)
        times[1] = timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9))
        guard futimens(fd, times) == 0 else { throw SystemError("futimens", path: path) }
    }

    public static func syncDirectory(_ dir: String) throws {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: dir) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: dir) }
    }

    /// Creates `path` and its parents like `makeDirectories` (the last one
    /// 0700), then makes sure it is guardian's own: a real directory (not a
    /// symbolic link), owned by this process's user, writable by no one
    /// else. A directory someone else made (say a predictable name in /tmp)
    /// is refused, never used.
    public static func makePrivateDirectory(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o700) == 0 {
            if !parent.isEmpty { try? syncDirectory(parent) }
        } else if errno != EEXIST {
            throw SystemError("mkdir", path: path)
        }
        try checkPrivateDirectory(path)
    }

    /// Throws unless `path` is a directory (not a link) owned by this
    /// process's user and not writable by group or others.
    public static func checkPrivateDirectory(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw SystemError("lstat", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SystemError("use as a private directory (not a directory, or a symbolic link)", path: path, code: ENOTDIR)
        }
        guard st.st_uid == geteuid(), st.st_mode & 0o022 == 0 else {
            throw SystemError(
                "use as a private directory (owner uid \(st.st_uid), mode \(String(st.st_mode & 0o7777, radix: 8)); "
                    + "needs uid \(geteuid()), not writable by group or others)", path: path, code: EPERM)
        }
    }

    /// Creates `path` and its parents (mode 0755), fsyncing each directory created.
    public static func makeDirectories(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0, errno != EEXIST { throw SystemError("mkdir", path: path) }
        if !parent.isEmpty { try? syncDirectory(parent) }
    }
}
