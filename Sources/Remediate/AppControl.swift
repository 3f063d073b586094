import CSystemd
import Foundation
import Platform

/// Stops and starts the application that owns the database.
public protocol AppController: Sendable {
    /// `systemd app.service`, `commands`: for the timeline.
    var description: String { get }
    /// Returns once the app is stopped; throws with a clear reason otherwise.
    func stop(timeout: Duration) async throws
    /// Returns once the app is confirmed active (and stayed so through a
    /// short settle period), with the moment it was first seen active;
    /// throws otherwise.
    func start(timeout: Duration) async throws -> Date
}

/// How long a freshly started app must stay up before it counts as started:
/// a `Type=simple` unit is "active" the moment it forks, even if it exits a
/// second later.
let settlePeriod: Duration = .seconds(1)

public struct AppControlError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Controls a systemd unit through systemd's D-Bus API (libsystemd sd-bus):
/// `org.freedesktop.systemd1.Manager.StopUnit/StartUnit(name, "replace")`,
/// then polls the unit's `ActiveState` until it is `inactive`/`failed`
/// (stop) or `active` (start). A unit systemd does not know (`LoadState`
/// not-found) is refused before anything is done. sd-bus connections are
/// not thread-safe: each operation opens its own, on Remediate's thread pool.
public struct SystemdUnitController: AppController {
    public let unit: String
    /// nil = the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured by sd-bus).
    public let busAddress: String?

    public init(unit: String, busAddress: String? = nil) {
        self.unit = unit
        self.busAddress = busAddress
    }

    public var description: String { "systemd unit \(unit)" }

    public func stop(timeout: Duration) async throws {
        let unit = unit, address = busAddress
        try await RemediatePool.shared.run {
            let bus = try SDBus(address: address)
            let path = try bus.loadUnit(unit)
            try bus.requireLoaded(unit: unit, path: path)
            try bus.callManager("StopUnit", unit: unit)
            try bus.wait(path: path, unit: unit, timeout: timeout, until: ["inactive", "failed"], failOn: [])
        }
    }

    public func start(timeout: Duration) async throws -> Date {
        let unit = unit, address = busAddress
        return try await RemediatePool.shared.run {
            let bus = try SDBus(address: address)
            let path = try bus.loadUnit(unit)
            try bus.requireLoaded(unit: unit, path: path)
            try bus.callManager("StartUnit", unit: unit)
            let active = try bus.wait(path: path, unit: unit, timeout: timeout, until: ["active"], failOn: ["failed"])
            try bus.settle(path: path, unit: unit, state: "active", for: settlePeriod)
            return active
        }
    }
}

/// One sd-bus connection (blocking; used on one thread at a time).
final class SDBus {
    static let destination = "org.freedesktop.systemd1"
    static let managerPath = "/org/freedesktop/systemd1"
    static let managerInterface = "org.freedesktop.systemd1.Manager"
    static let unitInterface = "org.freedesktop.systemd1.Unit"
    static let serviceInterface = "org.freedesktop.systemd1.Service"
    static let callTimeoutUsec: UInt64 = 10_000_000

    private let bus: OpaquePointer

    init(address: String?) throws {
        var b: OpaquePointer?
        var rc: Int32
        if let address {
            rc = sd_bus_new(&b)
            if rc >= 0, let b {
                rc = sd_bus_set_address(b, address)
                if rc >= 0 { rc = sd_bus_set_bus_client(b, 1) }
                if rc >= 0 { rc = sd_bus_start(b) }
                if rc < 0 { sd_bus_flush_close_unref(b) }
            }
        } else {
            rc = sd_bus_open_system(&b)
        }
        guard rc >= 0, let b else {
            throw AppControlError("cannot connect to systemd's D-Bus (\(address ?? "system bus")): \(String(cString: strerror(-rc)))")
        }
        bus = b
    }

    deinit { sd_bus_flush_close_unref(bus) }

    private func failure(_ what: String, _ rc: Int32, _ error: inout sd_bus_error) -> AppControlError {
        defer { sd_bus_error_free(&error) }
        let name = error.name.map { String(cString: $0) }
        let message = error.message.map { String(cString: $0) }
        if let message { return AppControlError("\(what): \(message)\(name.map { " (\($0))" } ?? "")") }
        return AppControlError("\(what): \(String(cString: strerror(-rc)))")
    }

    /// `LoadUnit(name)` → the unit's object path (loads it if needed).
    func loadUnit(_ unit: String) throws -> String {
        var m: OpaquePointer?
        var rc = sd_bus_message_new_method_call(bus, &m, Self.destination, Self.managerPath, Self.managerInterface, "LoadUnit")
        guard rc >= 0, let m else { throw AppControlError("cannot build a D-Bus call: \(String(cString: strerror(-rc)))") }
        defer { sd_bus_message_unref(m) }
        rc = unit.withCString { sd_bus_message_append_basic(m, CChar(UInt8(ascii: "s")), $0) }
        guard rc >= 0 else { throw AppControlError("cannot build a D-Bus call: \(String(cString: strerror(-rc)))") }
        var error = sd_bus_error()
        var reply: OpaquePointer?
        rc = sd_bus_call(bus, m, Self.callTimeoutUsec, &error, &reply)
        guard rc >= 0, let reply else { throw failure("systemd could not load \(unit)", rc, &error) }
        defer { sd_bus_message_unref(reply) }
        var path: UnsafePointer<CChar>?
        rc = sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "o")), &path)
        guard rc >= 0, let path else { throw AppControlError("systemd sent an unexpected reply to LoadUnit(\(unit))") }
        return String(cString: path)
    }

    func property(_ path: String, _ name: String, interface: String = SDBus.unitInterface) throws -> String {
        var error = sd_bus_error()
        var value: UnsafeMutablePointer<CChar>?
        let rc = sd_bus_get_property_string(bus, Self.destination, path, interface, name, &error, &value)
        guard rc >= 0, let value else { throw failure("cannot read \(name) of \(path)", rc, &error) }
        defer { free(value) }
        return String(cString: value)
    }

    func requireLoaded(unit: String, path: String) throws {
        let state = try property(path, "LoadState")
        guard state == "loaded" else {
            throw AppControlError("systemd unit \(unit) does not exist or cannot be used (LoadState=\(state))")
        }
    }

    func callManager(_ method: String, unit: String) throws {
        var m: OpaquePointer?
        var rc = sd_bus_message_new_method_call(bus, &m, Self.destination, Self.managerPath, Self.managerInterface, method)
        guard rc >= 0, let m else { throw AppControlError("cannot build a D-Bus call: \(String(cString: strerror(-rc)))") }
        defer { sd_bus_message_unref(m) }
        rc = unit.withCString { sd_bus_message_append_basic(m, CChar(UInt8(ascii: "s")), $0) }
        if rc >= 0 { rc = "replace".withCString { sd_bus_message_append_basic(m, CChar(UInt8(ascii: "s")), $0) } }
        guard rc >= 0 else { throw AppControlError("cannot build a D-Bus call: \(String(cString: strerror(-rc)))") }
        var error = sd_bus_error()
        var reply: OpaquePointer?
        rc = sd_bus_call(bus, m, Self.callTimeoutUsec, &error, &reply)
        guard rc >= 0 else { throw failure("systemd refused \(method) \(unit)", rc, &error) }
        if let reply { sd_bus_message_unref(reply) }
    }

    /// Polls `ActiveState` every 50 ms; returns when one of `until` was first seen.
    @discardableResult
    func wait(path: String, unit: String, timeout: Duration, until: Set<String>, failOn: Set<String>) throws -> Date {
        let deadline = ContinuousClock.now + timeout
        var state = ""
        while true {
            state = try property(path, "ActiveState")
            if until.contains(state) { return Date() }
            if failOn.contains(state) {
                let result = (try? property(path, "Result", interface: Self.serviceInterface)) ?? "?"
                throw AppControlError("systemd unit \(unit) is \(state) (Result=\(result))")
            }
            if ContinuousClock.now >= deadline { break }
            usleep(50_000)
        }
        throw AppControlError("systemd unit \(unit) still \(state) after \(Units.formatDuration(timeout))")
    }

    /// Requires `ActiveState` to stay `state` for `period`.
    func settle(path: String, unit: String, state expected: String, for period: Duration) throws {
        let end = ContinuousClock.now + period
        while ContinuousClock.now < end {
            usleep(100_000)
            let state = try property(path, "ActiveState")
            if state != expected {
                let result = (try? property(path, "Result", interface: Self.serviceInterface)) ?? "?"
                throw AppControlError("systemd unit \(unit) became \(state) right after starting (Result=\(result))")
            }
        }
    }
}

/// Controls the app through configured commands, for hosts without systemd.
/// Each runs as an argv (no shell) with the stop/start timeout. With a
/// status command, "stopped" means it exits non-zero and "active" means it
/// exits 0 (polled until the timeout); without one, the start/stop
/// command's exit status 0 is taken as the answer.
public struct CommandAppController: AppController {
    public let stopCommand: [String]
    public let startCommand: [String]
    public let statusCommand: [String]

    public init(stop: [String], start: [String], status: [String] = []) {
        stopCommand = stop
        startCommand = start
        statusCommand = status
    }

    public var description: String { "commands (stop: \(stopCommand.first ?? "-"), start: \(startCommand.first ?? "-"))" }

    public func stop(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        let outcome: CommandOutcome
        do {
            outcome = try await CommandRunner.run(stopCommand, timeout: timeout)
        } catch {
            throw AppControlError("stop command \(stopCommand[0]) could not run: \(error)")
        }
        guard outcome.succeeded else { throw AppControlError("stop command \(stopCommand[0]) failed: \(outcome.summary)") }
        guard !statusCommand.isEmpty else { return }
        while true {
            let left = deadline - ContinuousClock.now
            let status = try? await CommandRunner.run(statusCommand, timeout: max(.seconds(1), left))
            if let status, !status.succeeded { return }
            if ContinuousClock.now >= deadline {
                throw AppControlError("the app still reports active (status command exit 0) \(Units.formatDuration(timeout)) after the stop command")
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    public func start(timeout: Duration) async throws -> Date {
        let deadline = ContinuousClock.now + timeout
        let outcome: CommandOutcome
        do {
            outcome = try await CommandRunner.run(startCommand, timeout: timeout)
        } catch {
            throw AppControlError("start command \(startCommand[0]) could not run: \(error)")
        }
        guard outcome.succeeded else { throw AppControlError("start command \(startCommand[0]) failed: \(outcome.summary)") }
        guard !statusCommand.isEmpty else { return Date() }
        var last = ""
        while true {
            let left = deadline - ContinuousClock.now
            if let status = try? await CommandRunner.run(statusCommand, timeout: max(.seconds(1), left)) {
                if status.succeeded {
                    let active = Date()
                    // Still up a moment later (not a crash right after start).
                    try? await Task.sleep(for: settlePeriod / 4)
                    let again = try? await CommandRunner.run(statusCommand, timeout: .seconds(5))
                    guard again?.succeeded == true else {
                        throw AppControlError("the app reported active, then not (status command: \(again?.summary ?? "did not run"))")
                    }
                    return active
                }
                last = status.summary
            }
            if ContinuousClock.now >= deadline {
                throw AppControlError("the app did not report active within \(Units.formatDuration(timeout)) (status command: \(last))")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Processes other than guardian that have a file open: from
/// `/proc/<pid>/fd` where guardian may read it, and from `/proc/locks`,
/// which is global: every SQLite connection to a WAL database holds a
/// POSIX lock on its `-shm` (the DMS byte) for as long as it is open, and
/// in exclusive locking mode on the database itself. Under the packaged
/// unit (`ProtectProc=noaccess`, no CAP_SYS_PTRACE) other users' fd lists
/// are hidden, so the locks are what finds the application's connections;
/// what could not be inspected is counted, never taken for "closed".
public enum OpenFiles {
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        public var pid: Int32
        public var command: String
        public var description: String { pid > 0 ? "pid \(pid) (\(command))" : command }
    }

    public struct Scan: Sendable, Equatable {
        public var holders: [Holder] = []
        /// Processes whose open files could not be read (another user's).
        public var uninspected = 0
        /// Whether `/proc/locks` was read.
        public var locksRead = false
        /// /proc hides other users' processes altogether (hidepid=invisible
        /// or ptraceable): they are not even counted.
        public var processesHidden = false
        /// Every process was inspected: no holders means none.
        public var isComplete: Bool { uninspected == 0 && !processesHidden }
    }

    /// Whether /proc is mounted so that other users' processes are not
    /// listed at all (`hidepid=invisible`/`2`, `ptraceable`/`4`).
    static func procHidesProcesses(mountinfo: String? = ProcFiles.text("/proc/self/mountinfo")) -> Bool {
        guard let mountinfo else { return true }
        // The last mount at /proc is the one in effect.
        var hides = false
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4] == "/proc" else { continue }
            let options = line.split(separator: ",").flatMap { $0.split(separator: " ") }
            hides = options.contains { ["hidepid=2", "hidepid=invisible", "hidepid=4", "hidepid=ptraceable"].contains(String($0)) }
        }
        return hides
    }

    /// Blocking: scans /proc. Matches by device and inode, so renamed files count.
    public static func holders(of paths: [String]) -> [Holder] { scan(of: paths).holders }

    /// Blocking: the fd scan and the lock table.
    public static func scan(of paths: [String]) -> Scan {
        var targets: Set<[UInt64]> = []
        for p in paths {
            var st = stat()
            if stat(p, &st) == 0 { targets.insert([UInt64(st.st_dev), UInt64(st.st_ino)]) }
        }
        var result = Scan()
        guard !targets.isEmpty else { return result }
        result.processesHidden = procHidesProcesses()
        let me = getpid()
        if let procs = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            for entry in procs {
                guard let pid = Int32(entry), pid != me else { continue }
                guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else {
                    // Gone meanwhile is fine; not allowed to look is not.
                    if access("/proc/\(pid)", F_OK) == 0 { result.uninspected += 1 }
                    continue
                }
                var denied = false
                for fd in fds {
                    var st = stat()
                    guard stat("/proc/\(pid)/fd/\(fd)", &st) == 0 else {
                        if errno == EACCES || errno == EPERM { denied = true }
                        continue
                    }
                    if targets.contains([UInt64(st.st_dev), UInt64(st.st_ino)]) {
                        result.holders.append(Holder(pid: pid, command: command(of: pid)))
                        denied = false
                        break
                    }
                }
                if denied { result.uninspected += 1 }
            }
        }
        if let locks = ProcFiles.text("/proc/locks") {
            result.locksRead = true
            for pid in lockHolders(in: locks, targets: targets) where pid != me {
                guard !result.holders.contains(where: { $0.pid == pid }) else { continue }
                result.holders.append(Holder(pid: pid, command: pid > 0 ? command(of: pid) : "an open file description lock"))
            }
        }
        return result
    }

    static func command(of pid: Int32) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }

    /// The PIDs holding (or waiting for) a lock on one of `targets`
    /// (device, inode) in the text of /proc/locks:
    /// `1: POSIX  ADVISORY  READ 1234 08:01:5678 128 128` (device in hex).
    /// PID -1 is an open file description lock.
    static func lockHolders(in text: String, targets: Set<[UInt64]>) -> [Int32] {
        func split(_ dev: UInt64) -> (major: UInt64, minor: UInt64) {
            (((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)), (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
        }
        let wanted = targets.map { (split($0[0]), $0[1]) }
        var out: [Int32] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).filter { $0 != "->" }
            guard fields.count >= 6, let pid = Int32(fields[4]) else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, let major = UInt64(id[0], radix: 16), let minor = UInt64(id[1], radix: 16), let inode = UInt64(id[2]) else { continue }
            // Exact device and inode; on file systems with anonymous devices
            // (btrfs subvolumes, overlay: major 0) stat's device can differ from
            // the one the lock table shows, and the inode decides.
            let match = wanted.contains { w in
                w.1 == inode && ((w.0.major == major && w.0.minor == minor) || (w.0.major == 0 && major == 0))
            }
            if match, !out.contains(pid) { out.append(pid) }
        }
        return out
    }
}
