import Foundation
import Platform

/// gzip compression of one archive with the system `gzip` (no shell):
/// stdin is the archive (opened without following links), stdout a hidden
/// temporary file beside it. Only once gzip succeeded and the archive did
/// not change meanwhile is the `.gz` fsynced, given the archive's owner,
/// mode and mtime, renamed into place, and the archive deleted. On any
/// failure (ENOSPC included) the temporary file goes and the archive stays.
enum Compressor {
    static let tempSuffix = ".gz.guardian-tmp"

    enum Outcome: Equatable {
        /// Allocated bytes before and after.
        case compressed(before: Int64, after: Int64)
        /// A writer may still append to it; try again later.
        case postponed(String)
        case failed(String)
    }

    /// `/usr/bin/gzip` or `/bin/gzip`, else `gzip` from PATH.
    static let gzipPath: String = {
        for candidate in ["/usr/bin/gzip", "/bin/gzip"] where access(candidate, X_OK) == 0 { return candidate }
        return "gzip"
    }()

    static var gzipAvailable: Bool {
        if gzipPath.hasPrefix("/") { return true }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/gzip", X_OK) == 0 }
    }

    /// - Parameter isOpen: whether a process holds a file open (`OpenFileCheck`).
    static func compress(
        dir: SafeDirectory, name: String, quietPeriod: Duration, now: Date, stop: StopSignal,
        isOpen: (FileID) -> OpenFileCheck.Answer = OpenFileCheck.check
    ) -> Outcome {
        // Is a writer still appending to it? Asked before guardian opens it itself.
        guard let seen = dir.lstat(name), seen.isRegular else { return .failed("\(dir.child(name)) is not a regular file") }
        switch isOpen(seen.fileID) {
        case .open:
            return .postponed("a process still has it open (it has not reopened its log yet)")
        case .unknown where now.timeIntervalSince(seen.modificationDate) < quietPeriod.seconds:
            return .postponed("it changed less than \(Units.formatDuration(quietPeriod)) ago and open files cannot be inspected")
        default:
            break
        }
        let source: (fd: Int32, stat: stat)
        do {
            source = try dir.openRegular(name, flags: O_RDONLY)
        } catch {
            return .failed("\(error)")
        }
        defer { close(source.fd) }
        let before = source.stat
        guard before.fileID == seen.fileID else { return .postponed("it was replaced while being examined") }

        let gzName = name + ".gz"
        let tmpName = "." + name + tempSuffix
        if let stale = dir.lstat(tmpName), stale.isRegular { try? dir.unlink(tmpName) }
        let out: Int32
        do {
            out = try dir.createExclusive(tmpName, mode: before.st_mode & 0o777)
        } catch {
            return .failed("\(error)")
        }
        var keep = false
        defer {
            close(out)
            if !keep { try? dir.unlink(tmpName) }
        }

        // 60 s plus 1 s per 5 MB: far beyond gzip's speed, short of forever.
        let timeout = Duration.seconds(60 + Int64(before.st_size) / 5_000_000)
        let outcome: ProcessOutcome
        do {
            outcome = try Subprocess.runBlocking([gzipPath, "-c"], stdin: source.fd, stdout: out, timeout: timeout, handle: stop.child)
        } catch {
            return .failed("\(error)")
        }
        guard outcome.succeeded else {
            return stop.isStopped ? .postponed("guardian is stopping") : .failed("gzip \(outcome.summary)")
        }

        var after = stat()
        guard fstat(source.fd, &after) == 0 else { return .failed("\(SystemError("fstat", path: dir.child(name)))") }
        if after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec {
            return .postponed("it was written to while being compressed")
        }
        _ = fchown(out, before.st_uid, before.st_gid)
        _ = fchmod(out, before.st_mode & 0o7777)
        FileACL.copy(from: source.fd, to: out, path: dir.child(gzName))
        var times = [timespec](repeating: timespec(), count: 2)
        times[0] = before.st_atim
        times[1] = before.st_mtim
        _ = futimens(out, times)
        guard fsync(out) == 0 else { return .failed("\(SystemError("fsync", path: dir.child(tmpName)))") }
        if dir.lstat(gzName) != nil { return .failed("\(dir.child(gzName)) already exists") }
        do {
            try dir.rename(tmpName, gzName)
        } catch {
            return .failed("\(error)")
        }
        keep = true
        // The archive must still be the file that was compressed.
        if let current = dir.lstat(name), current.fileID == before.fileID {
            do { try dir.unlink(name) } catch { return .failed("\(error) (the .gz is complete; the plain archive is still there)") }
        }
        dir.sync()
        var gz = stat()
        let afterBytes = fstat(out, &gz) == 0 ? gz.allocatedBytes : 0
        return .compressed(before: before.st_nlink <= 1 ? before.allocatedBytes : 0, after: afterBytes)
    }
}
