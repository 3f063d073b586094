import Foundation
import Platform

/// How a rule's archives are compressed: the built-in `gzip -c` (`.gz`), or
/// logrotate's `compresscmd` + `compressoptions`, run without a shell with
/// the archive as stdin and the compressed file as stdout, named with
/// `compressext` (by default the extension logrotate 3.21 derives from the
/// command's name: gzip .gz, bzip2 .bz2, xz .xz, zstd .zst, compress .Z,
/// zip "zip"; any other command: .gz).
struct CompressProgram: Equatable {
    /// nil: the built-in gzip.
    var command: [String]?
    var ext: String

    static let builtIn = CompressProgram(command: nil, ext: ".gz")

    /// logrotate 3.21's table (config.c, compress_cmd_list).
    static let extensionOfCommand: [String: String] = [
        "gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst", "compress": ".Z", "zip": "zip",
    ]

    /// Extensions of compressed archives guardian recognises whatever the
    /// rule's current command (an archive compressed before `compresscmd`
    /// changed still counts for `rotate N` and `maxage`).
    static let knownExtensions = [".gz", ".zst", ".xz", ".bz2", ".Z", ".lz4"]

    init(command: [String]?, ext: String) {
        self.command = command
        self.ext = ext
    }

    init(_ rule: LogRotationConfig) {
        if let cmd = rule.compressCommand {
            let base = cmd.split(separator: "/").last.map(String.init) ?? cmd
            command = [cmd] + (rule.compressOptions ?? [])
            ext = rule.compressExt ?? Self.extensionOfCommand[base] ?? ".gz"
        } else {
            command = nil
            ext = rule.compressExt ?? ".gz"
        }
    }

    /// The extensions `Archive` strips: the known ones and this rule's.
    var recognised: [String] {
        Self.knownExtensions.contains(ext) || ext.isEmpty ? Self.knownExtensions : [ext] + Self.knownExtensions
    }

    var argv: [String] { command ?? [Compressor.gzipPath, "-c"] }

    /// The built-in gzip, whose output guardian can extend (gzip members
    /// concatenate): what the streamed copytruncate needs.
    var isBuiltInGzip: Bool { command == nil && ext == ".gz" }
}

extension LogRotationConfig {
    /// The extension logrotate 3.21 gives archives of a `compresscmd`
    /// (by its file name), or nil when it keeps the previous one.
    public static func compressExtension(ofCommand command: String) -> String? {
        CompressProgram.extensionOfCommand[command.split(separator: "/").last.map(String.init) ?? command]
    }
}

/// Compression of one archive with the rule's `CompressProgram` (no shell):
/// stdin is the archive (opened without following links), stdout a hidden
/// temporary file beside it. Only once the command succeeded and the archive
/// did not change meanwhile is the result fsynced, given the archive's owner
/// (as root; under `su` it stays the user's, like logrotate's), mode and
/// mtime, renamed into place, and the archive deleted. On any failure
/// (ENOSPC included) the temporary file goes and the archive stays.
enum Compressor {
    static let tempMarker = ".guardian-tmp"
    static let tempSuffix = ".gz" + tempMarker

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
    /// - Parameter runAs: under `su`, the user the command runs as (through
    ///   setpriv, like logrotate's compressor child); nil runs it as guardian.
    static func compress(
        dir: SafeDirectory, name: String, program: CompressProgram = .builtIn, quietPeriod: Duration, now: Date, stop: StopSignal,
        runAs: ThreadCredentials? = nil, isOpen: (FileID) -> OpenFileCheck.Answer = OpenFileCheck.check
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

        let gzName = name + program.ext
        let tmpName = "." + name + program.ext + tempMarker
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
            outcome = try Subprocess.runBlocking(
                dropPrivileges(program.argv, to: runAs), stdin: source.fd, stdout: out, timeout: timeout, handle: stop.child,
                environment: ["LOGROTATE_COMPRESSED_FILENAME=\(dir.child(name))"])
        } catch {
            return .failed("\(error)")
        }
        guard outcome.succeeded else {
            return stop.isStopped ? .postponed("guardian is stopping") : .failed("\(program.argv.joined(separator: " ")) \(outcome.summary)")
        }

        var after = stat()
        guard fstat(source.fd, &after) == 0 else { return .failed("\(SystemError("fstat", path: dir.child(name)))") }
        if after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec {
            return .postponed("it was written to while being compressed")
        }
        // Like logrotate: the owner is set only by root (under `su` the
        // file is the user's).
        if ThreadCredentials.current.uid == 0 { _ = fchown(out, before.st_uid, before.st_gid) }
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

    /// `setpriv` is util-linux's: it exists wherever guardian's systemd does.
    static let setprivPath: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { access($0, X_OK) == 0 }

    /// `argv` run as `user` (uid, gid, no other group) when one is given and
    /// is not root. A child of a thread working under `su` would otherwise
    /// get guardian's own uid back at exec.
    static func dropPrivileges(_ argv: [String], to user: ThreadCredentials?) -> [String] {
        guard let user, user.uid != 0, let setpriv = setprivPath else { return argv }
        return [setpriv, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--"] + argv
    }
}
