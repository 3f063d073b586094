import Foundation

/// A private network namespace joined to the test's namespace by a veth
/// pair (test-peers.md §9): a server started inside it (`wrap`) listens on
/// `innerAddress`, the client connects from outside, and `cut()` takes the
/// inner end of the link down so that every packet is silently dropped
/// (no refusal, no reset) until `heal()`. Needs root.
final class NetNamespace: @unchecked Sendable {
    let name: String
    let outerLink: String
    let innerLink: String
    let outerAddress: String
    let innerAddress: String

    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") }

    private init(id: String, subnet: (Int, Int, Int)) {
        name = "gtest-\(id)"
        outerLink = "gv\(id)a"
        innerLink = "gv\(id)b"
        outerAddress = "10.\(subnet.0).\(subnet.1).\(subnet.2 + 1)"
        innerAddress = "10.\(subnet.0).\(subnet.1).\(subnet.2 + 2)"
    }

    static func create() async throws -> NetNamespace {
        let id = String(UInt32.random(in: 0...0xffffff), radix: 16)
        let ns = NetNamespace(id: id, subnet: (Int.random(in: 200...249), Int.random(in: 0...255), 4 * Int.random(in: 0...63)))
        do {
            try await ns.ip("netns", "add", ns.name)
            try await ns.ip("link", "add", ns.outerLink, "type", "veth", "peer", "name", ns.innerLink, "netns", ns.name)
            try await ns.ip("addr", "add", "\(ns.outerAddress)/30", "dev", ns.outerLink)
            try await ns.ip("link", "set", ns.outerLink, "up")
            try await ns.ip("netns", "exec", ns.name, "ip", "addr", "add", "\(ns.innerAddress)/30", "dev", ns.innerLink)
            try await ns.ip("netns", "exec", ns.name, "ip", "link", "set", ns.innerLink, "up")
            try await ns.ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        } catch {
            await ns.destroy()
            throw error
        }
        return ns
    }

    /// The command line that runs `executable` inside the namespace.
    func wrap(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        ("/usr/sbin/ip", ["netns", "exec", name, executable] + arguments)
    }

    /// Drops every packet between the namespace and the outside.
    func cut() async throws { try await ip("netns", "exec", name, "ip", "link", "set", innerLink, "down") }
    func heal() async throws { try await ip("netns", "exec", name, "ip", "link", "set", innerLink, "up") }

    func destroy() async {
        _ = try? await run("/usr/sbin/ip", ["link", "del", outerLink])
        _ = try? await run("/usr/sbin/ip", ["netns", "del", name])
    }

    private func ip(_ arguments: String...) async throws {
        let r = try await run("/usr/sbin/ip", arguments)
        guard r.status == 0 else { throw TestFailure("ip \(arguments.joined(separator: " ")): \(r.stderr)") }
    }
}
