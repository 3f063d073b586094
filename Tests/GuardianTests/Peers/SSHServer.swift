import Foundation
import Platform
import Replication

/// A private OpenSSH server on a free 127.0.0.1 port with its own host key,
/// a client key in `authorized_keys` and a matching `known_hosts`
/// (test-peers.md §2). It runs in the foreground (`-D`) as the current user,
/// who is also the login user, so nothing outside its directory changes
/// (as root it needs /run/sshd, which it creates). Stopped by PID: the
/// listener and its per-connection children.
final class SSHServer: @unchecked Sendable {
    let dir: String
    let port: Int
    let user: String
    /// 127.0.0.1, or the inner address of `namespace`.
    let host: String
    let namespace: NetNamespace?
    private let slot = PeerSlot()

    var hostKey: String { dir + "/hostkey_ed25519" }
    var clientKey: String { dir + "/client_ed25519" }
    var knownHosts: String { dir + "/known_hosts" }
    var config: String { dir + "/sshd_config" }
    /// Where replicas of tests live (readable directly: the server is local).
    var dataDir: String { dir + "/data" }
    var pid: Int32 { slot.pid }

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") }

    private init(dir: String, port: Int, user: String, namespace: NetNamespace?) {
        self.dir = dir
        self.port = port
        self.user = user
        self.namespace = namespace
        self.host = namespace?.innerAddress ?? "127.0.0.1"
    }

    /// Starts sshd on 127.0.0.1, or inside `namespace` on its inner address.
    static func start(in namespace: NetNamespace? = nil) async throws -> SSHServer {
        guard available else { throw TestFailure("/usr/sbin/sshd not found; apt-get install openssh-server") }
        guard let pw = getpwuid(getuid()) else { throw TestFailure("no passwd entry for uid \(getuid())") }
        let server = SSHServer(dir: try TestSupport.makeTempDir("sshd"), port: TestSupport.freePort(), user: String(cString: pw.pointee.pw_name), namespace: namespace)
        do {
            try await server.setUp()
            try await server.launch()
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    private func setUp() async throws {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try await keygen(hostKey)
        try await keygen(clientKey)
        try FileManager.default.copyItem(atPath: clientKey + ".pub", toPath: dir + "/authorized_keys")
        try writeKnownHosts(forHostKey: hostKey)
        try TestSupport.write("""
            Port \(port)
            ListenAddress \(host)
            HostKey \(hostKey)
            PidFile none
            AuthorizedKeysFile \(dir)/authorized_keys
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PubkeyAuthentication yes
            PermitRootLogin prohibit-password
            UsePAM no
            StrictModes no
            Subsystem sftp internal-sftp
            LogLevel VERBOSE
            MaxStartups 100
            """ + "\n", to: config)
        if getuid() == 0 {
            try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
    }

    func keygen(_ path: String) async throws {
        let r = try await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "guardian-test", "-f", path])
        guard r.status == 0 else { throw TestFailure("ssh-keygen: \(r.stderr)") }
    }

    /// known_hosts naming this server (`[127.0.0.1]:port`) with the given public key.
    func writeKnownHosts(forHostKey key: String, to path: String? = nil) throws {
        let pub = try String(contentsOfFile: key + ".pub", encoding: .utf8).split(separator: " ")
        try TestSupport.write("[\(host)]:\(port) \(pub[0]) \(pub[1])\n", to: path ?? knownHosts)
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    func fingerprint(of key: String) async throws -> String {
        let r = try await run("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", key + ".pub"])
        guard r.status == 0, let fp = r.stdout.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") }) else {
            throw TestFailure("ssh-keygen -l: \(r.stderr)")
        }
        return String(fp)
    }

    private func launch() async throws {
        let command = ("/usr/sbin/sshd", ["-D", "-e", "-f", config])
        let (executable, arguments) = namespace?.wrap(command.0, command.1) ?? command
        let process = try await Spawned.start(executable, arguments)
        slot.set(process)
        // Ready when the port accepts connections and sends a banner.
        let ready = await TestSupport.waitUntil(timeout: .seconds(10)) {
            process.isRunning && Self.banner(host: self.host, port: self.port)
        }
        guard ready else { throw TestFailure("sshd did not start on port \(port): \(process.stderr.suffix(2000))") }
    }

    private static func banner(host: String, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(host)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 4 && buffer[0..<4].elementsEqual("SSH-".utf8)
    }

    func location(path: String? = nil, keyPath: String? = nil, knownHosts: String? = nil) -> SFTPLocation {
        SFTPLocation(
            host: host, port: port, user: user, path: path ?? dataDir + "/replica",
            keyPath: keyPath ?? clientKey, knownHosts: knownHosts ?? self.knownHosts)
    }

    /// The listener and every process below it (per-connection sshd processes).
    func processTree() -> [Int32] {
        let root = pid
        guard root > 0 else { return [] }
        var parents: [Int32: Int32] = [:]
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            for entry in entries {
                guard let p = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { continue }
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                if fields.count > 2, let ppid = Int32(fields[1]) { parents[p] = ppid }
            }
        }
        var tree: [Int32] = [root]
        var index = 0
        while index < tree.count {
            let current = tree[index]
            tree += parents.filter { $0.value == current }.map(\.key)
            index += 1
        }
        return tree
    }

    /// SIGKILL to the listener and all its sessions: every connection drops.
    func kill() async {
        let tree = processTree()
        for p in tree.reversed() { Foundation.kill(p, SIGKILL) }
        if let process = slot.current {
            await process.wait(timeout: .seconds(10))
            process.removeFiles()
        }
    }

    /// Drops established sessions but keeps the listener (a network blip).
    func dropSessions() {
        for p in processTree().dropFirst() { Foundation.kill(p, SIGKILL) }
    }

    func pause() { for p in processTree() { Foundation.kill(p, SIGSTOP) } }
    func resume() { for p in processTree() { Foundation.kill(p, SIGCONT) } }

    /// Starts again on the same port with the same keys.
    func restart() async throws {
        await kill()
        try await launch()
    }

    /// Replaces the host key (a "changed host key") and restarts.
    func rotateHostKey() async throws {
        try? FileManager.default.removeItem(atPath: hostKey)
        try? FileManager.default.removeItem(atPath: hostKey + ".pub")
        try await keygen(hostKey)
        try await restart()
    }

    var log: String { slot.log }

    func stop() {
        let tree = processTree()
        for p in tree { Foundation.kill(p, SIGCONT) }
        for p in tree.reversed() { Foundation.kill(p, SIGKILL) }
        slot.stop(removing: dir)
    }

    deinit { stop() }
}
