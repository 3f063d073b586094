import Foundation
@testable import Platform
import Synchronization
import Testing

/// The pieces under guardian's two servers (status socket, metrics
/// endpoint): `SocketListener`, `HTTPServing.finish` and
/// `UnixSocketServer.readLine`, with real sockets and real slow peers.
@Suite(.serialized) struct SocketListenerTests {
    /// A listener on a fresh loopback port.
    static func listener(maxPending: Int = 64) throws -> (SocketListener, Int) {
        let port = TestSupport.freePort()
        let fd = try LoopbackAddress.parse("127.0.0.1:\(port)").listen()
        return (SocketListener(listening: fd, threadName: "test-accept", maxPending: maxPending), port)
    }

    /// Whether the peer closed `fd` within `timeout` (read answers 0 or a
    /// reset), reading and discarding whatever arrives before. Blocking.
    static func seesClose(_ fd: Int32, within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var sink = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return false }
            let ready = poll(&p, 1, Int32(max(1, left.milliseconds)))
            if ready < 0 && errno == EINTR { continue }
            guard ready == 1 else { return false }
            let n = read(fd, &sink, sink.count)
            if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
            if n < 0 && errno != EINTR && errno != EAGAIN { return true }
        }
    }

    /// The accept thread ended on its own (nobody reads the connections any
    /// more) and closed the listening descriptor; its number went to another
    /// socket. A later `stop()` must not shut that socket down.
    @Test(.timeLimit(.minutes(1)))
    func stopNeverTouchesADescriptorTheThreadClosed() async throws {
        let port = TestSupport.freePort()
        let listening = try LoopbackAddress.parse("127.0.0.1:\(port)").listen()
        let listener = SocketListener(listening: listening, threadName: "test-accept")
        // The reader goes away: the stream is terminated.
        let reader = Task { for await fd in listener.connections { close(fd) } }
        try await Task.sleep(for: .milliseconds(100))
        reader.cancel()
        await reader.value
        // The next connection finds nobody reading: the thread closes it, then its descriptor.
        let client = try MetricsTests.connect(port)
        defer { close(client) }
        await listener.closed()

        // Another socket takes the listening descriptor's number.
        var held: [Int32] = []
        var victim: [Int32] = [-1, -1]
        defer { for fd in held { close(fd) } }
        for _ in 0..<256 {
            var pair: [Int32] = [-1, -1]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
            if pair[0] == listening || pair[1] == listening {
                victim = pair
                break
            }
            held += pair
        }
        try #require(victim[0] >= 0, "the number \(listening) was not reused")
        defer { close(victim[0]); close(victim[1]) }

        listener.stop()
        // Both ends of the pair still carry data both ways.
        #expect(send(victim[0], "a", 1, Int32(MSG_NOSIGNAL)) == 1, "stop() shut down an unrelated socket: \(String(cString: strerror(errno)))")
        #expect(send(victim[1], "b", 1, Int32(MSG_NOSIGNAL)) == 1, "stop() shut down an unrelated socket: \(String(cString: strerror(errno)))")
        var byte: UInt8 = 0
        #expect(read(victim[1], &byte, 1) == 1 && byte == UInt8(ascii: "a"))
        #expect(read(victim[0], &byte, 1) == 1 && byte == UInt8(ascii: "b"))
    }

    /// Connections accepted but not yet read from `connections` when the
    /// listener stops are closed by it (each client sees its end closed),
    /// and nothing is handed out after the stop.
    @Test(.timeLimit(.minutes(1)))
    func queuedConnectionsAreClosedOnStop() async throws {
        let (listener, port) = try Self.listener()
        var iterator = listener.connections.makeAsyncIterator()
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<5 { clients.append(try MetricsTests.connect(port)) }
        // One is taken and served (closed by its owner, the test).
        let taken = try #require(await iterator.next())
        close(taken)
        // Wait until the thread has accepted the other four.
        let deadline = ContinuousClock.now + .seconds(5)
        while listener.pendingCount < 4 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(listener.pendingCount == 4)
        listener.stop()
        await listener.closed()
        #expect(listener.pendingCount == 0)
        let snapshot = clients
        let closed = await BlockingPool.shared.run { snapshot.map { Self.seesClose($0, within: .seconds(3)) } }
        #expect(closed == [true, true, true, true, true], "a queued connection was left open")
        #expect(await iterator.next() == nil, "nothing is handed out after stop()")
    }

    /// At most `maxPending` connections wait in the queue; further clients
    /// stay in the kernel's backlog until the service takes one.
    @Test(.timeLimit(.minutes(1)))
    func theQueueIsBounded() async throws {
        let (listener, port) = try Self.listener(maxPending: 2)
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<6 { clients.append(try MetricsTests.connect(port)) }
        try await Task.sleep(for: .milliseconds(500))
        #expect(listener.pendingCount == 2)
        var iterator = listener.connections.makeAsyncIterator()
        for _ in 0..<6 {
            let fd = try #require(await iterator.next())
            close(fd)
        }
        listener.stop()
        await listener.closed()
    }

    /// A client that trickles a byte every 150 ms after its request holds
    /// the thread that answers it for about the drain deadline, not until it
    /// stops sending.
    @Test(.timeLimit(.minutes(1)))
    func finishReleasesATricklingClient() async throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let server = pair[0], client = pair[1]
        defer { close(client) }
        let stopTrickle = StopFlag()
        let trickle = Thread {
            // Six seconds of one byte every 150 ms.
            for _ in 0..<40 where !stopTrickle.isSet {
                if send(client, "x", 1, Int32(MSG_NOSIGNAL)) != 1 { break }
                usleep(150_000)
            }
        }
        trickle.start()
        let started = ContinuousClock.now
        let reply = HTTPServing.response(status: 200, body: Array("ok\n".utf8))
        await BlockingPool.shared.run { HTTPServing.finish(fd: server, reply, peer: "test") }
        let took = ContinuousClock.now - started
        stopTrickle.set()
        #expect(took < .milliseconds(1800), "finish held the thread for \(took)")
        // The client got the whole reply.
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(client, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    /// The status socket's request line has a total deadline too.
    @Test(.timeLimit(.minutes(1)))
    func readLineHasATotalDeadline() async throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let client = pair[1]
        let stopTrickle = StopFlag()
        let trickle = Thread {
            for _ in 0..<40 where !stopTrickle.isSet {
                if send(client, "s", 1, Int32(MSG_NOSIGNAL)) != 1 { break }
                usleep(150_000)
            }
        }
        trickle.start()
        let started = ContinuousClock.now
        let server = pair[0]
        let line = await BlockingPool.shared.run { UnixSocketServer.readLine(fd: server, timeoutMS: 500) }
        let took = ContinuousClock.now - started
        stopTrickle.set()
        #expect(line == nil, "a line that never ends is no request")
        #expect(took < .milliseconds(1500), "readLine waited \(took)")

        // A prompt client is read as before.
        var prompt: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &prompt) == 0)
        defer { close(prompt[0]); close(prompt[1]) }
        _ = send(prompt[1], "status\n", 7, Int32(MSG_NOSIGNAL))
        let reader = prompt[0]
        #expect(await BlockingPool.shared.run { UnixSocketServer.readLine(fd: reader) } == "status")
    }
}

/// A flag a test sets to stop a helper thread.
final class StopFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
