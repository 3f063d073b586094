import Foundation
import Platform

/// The two operations that empty a live log in place: a copytruncate
/// rotation that streams the log into its `.gz` (no uncompressed copy on a
/// filling disk), and the emergency truncate that keeps only a log's tail.
///
/// Both hold `flock(LOCK_EX)` on the log while they work, so that they never
/// interleave (writers do not take the lock; it only orders guardian's own
/// operations). Both need the writer to open the log with `O_APPEND`.
///
/// The window, as in logrotate's copytruncate: lines appended between the
/// last read that found the end of the file and the `ftruncate` (two system
/// calls, microseconds) are lost. Everything else is either in the archive
/// or, for the emergency truncate, counted in `bytes_dropped`.
enum LogTruncation {
    struct Streamed {
        /// Bytes of the log that went into the `.gz`.
        var copied: Int64
        /// Size of the `.gz`.
        var compressed: Int64
    }

    struct Truncated {
        var sizeBefore: Int64
        var kept: Int64
        var dropped: Int64
    }

    /// Copies the log `name` into `gzName` compressed (gzip reads the log
    /// itself, to its end, through a shared file offset), then reads what was
    /// appended meanwhile, truncates the log at once and appends those bytes
    /// to the `.gz` as a second gzip member (stored, not compressed: it is
    /// small). The free space needed is the size of the `.gz`, never the log's.
    /// On any failure (ENOSPC included) the `.gz` goes and the log stays.
    /// With `into`, the `.gz` goes there (`olddir`); without `truncate`
    /// (logrotate's `copy`) the log is only read.
    /// `runAs`: under `su`, the user gzip runs as (`Compressor.dropPrivileges`).
    static func copyTruncateCompressed(
        dir logDir: SafeDirectory, name: String, into: SafeDirectory? = nil, to gzName: String, truncate: Bool = true, stop: StopSignal,
        runAs: ThreadCredentials? = nil
    ) throws -> Streamed {
        let dir = into ?? logDir
        let (src, st) = try logDir.openRegular(name, flags: truncate ? O_RDWR : O_RDONLY)
        defer { close(src) }
        _ = flock(src, LOCK_EX)
        let plainName = gzName.hasSuffix(".gz") ? String(gzName.dropLast(3)) : gzName
        let tmpName = "." + plainName + Compressor.tempSuffix
        if let stale = dir.lstat(tmpName), stale.isRegular { try? dir.unlink(tmpName) }
        let out = try dir.createExclusive(tmpName, mode: st.st_mode & 0o777)
        var keep = false
        defer {
            close(out)
            if !keep { try? dir.unlink(tmpName) }
        }
        if ThreadCredentials.current.uid == 0 { _ = fchown(out, st.st_uid, st.st_gid) }
        _ = fchmod(out, st.st_mode & 0o7777)
        FileACL.copy(from: src, to: out, path: dir.child(gzName))
        guard lseek(src, 0, SEEK_SET) == 0 else { throw SystemError("lseek", path: logDir.child(name)) }

        // gzip passes while much is left (the writer may be fast); then the
        // rest in memory, and the truncate right after the read that found the end.
        var passes = 0
        while true {
            let offset = lseek(src, 0, SEEK_CUR)
            var now = stat()
            guard offset >= 0, fstat(src, &now) == 0 else { throw SystemError("fstat", path: logDir.child(name)) }
            let remaining = Int64(now.st_size) - Int64(offset)
            if remaining <= 64 << 10 || passes >= 4 { break }
            passes += 1
            let timeout = Duration.seconds(60 + remaining / 5_000_000)
            let outcome = try Subprocess.runBlocking(
                Compressor.dropPrivileges([Compressor.gzipPath, "-c"], to: runAs), stdin: src, stdout: out, timeout: timeout, handle: stop.child)
            guard outcome.succeeded else {
                throw SystemError(stop.isStopped ? "gzip (guardian is stopping)" : "gzip \(outcome.summary)", path: logDir.child(name), code: EIO)
            }
        }
        let start = lseek(src, 0, SEEK_CUR)
        var rest: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: logDir.child(name))
            }
            if n == 0 { break }
            rest += buffer[0..<n]
        }
        if truncate {
            guard ftruncate(src, 0) == 0 else { throw SystemError("truncate", path: logDir.child(name)) }
        }
        // From here on the lines are only in `rest` and the temporary file: keep it whatever happens.
        keep = true
        var problem: Error?
        if !rest.isEmpty || start == 0 {
            do { try DurableFile.writeAll(fd: out, GzipStored.member(rest), path: dir.child(tmpName)) } catch { problem = error }
        }
        _ = fsync(out)
        var times = [timespec](repeating: timespec(), count: 2)
        times[0] = st.st_atim
        var mtime = timespec()
        clock_gettime(CLOCK_REALTIME, &mtime)
        times[1] = mtime
        _ = futimens(out, times)
        try dir.rename(tmpName, gzName)
        dir.sync()
        if let problem { throw problem }
        var gz = stat()
        let compressed = fstat(out, &gz) == 0 ? Int64(gz.st_size) : 0
        return Streamed(copied: Int64(start) + Int64(rest.count), compressed: compressed)
    }

    /// Truncates the log keeping its last `keep` bytes, from the first line
    /// start within them (the tail is written back after the truncate, after
    /// whatever the writer appended in the meantime). nil when the log is not
    /// bigger than `keep` or a rotation holds it right now.
    static func truncateKeepingTail(dir: SafeDirectory, name: String, keep: Int64) throws -> Truncated? {
        let (fd, st) = try dir.openRegular(name, flags: O_RDWR | O_APPEND)
        defer { close(fd) }
        guard Int64(st.st_size) > keep else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return nil }
        var offset = max(0, Int64(st.st_size) - keep)
        var tail: [UInt8] = []
        var tailStart = offset
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: dir.child(name))
            }
            if n == 0 { break }
            tail += buffer[0..<n]
            offset += Int64(n)
            // The writer is faster than expected: keep only the last `keep` bytes.
            if Int64(tail.count) > 2 * keep {
                let drop = tail.count - Int(keep)
                tail.removeFirst(drop)
                tailStart += Int64(drop)
            }
        }
        guard ftruncate(fd, 0) == 0 else { throw SystemError("truncate", path: dir.child(name)) }
        let end = offset
        if Int64(tail.count) > keep {
            let drop = tail.count - Int(keep)
            tail.removeFirst(drop)
            tailStart += Int64(drop)
        }
        // Start at a line: drop the partial line the cut fell into.
        if tailStart > 0, let newline = tail.firstIndex(of: UInt8(ascii: "\n")) {
            tail.removeFirst(newline + 1)
        }
        if !tail.isEmpty { try DurableFile.writeAll(fd: fd, tail, path: dir.child(name)) }
        return Truncated(sizeBefore: end, kept: Int64(tail.count), dropped: end - Int64(tail.count))
    }
}

/// A gzip member with stored (uncompressed) deflate blocks: valid gzip that
/// needs no compressor, for the few bytes a streamed copytruncate reads last.
enum GzipStored {
    static func member(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
        out.reserveCapacity(data.count + data.count / 65535 * 5 + 30)
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let final = i + n == data.count
            out.append(final ? 1 : 0)
            out += [UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8((~n >> 8) & 0xff)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        let crc = crc32(data)
        let size = UInt32(truncatingIfNeeded: data.count)
        for v in [crc, size] { out += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)] }
        return out
    }

    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xffff_ffff
        for b in data { c = table[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xffff_ffff
    }
}
