import Foundation
import Logging
import Platform
import ServiceLifecycle
import Synchronization

/// Serves Prometheus metrics at `GET /metrics` on a loopback address
/// (`status.metrics`): a minimal HTTP/1.1 server. The accept loop runs on
/// its own thread (`SocketListener`); each connection's reads and writes run
/// on the endpoint's own small thread pool, bounded in size and time (a
/// client holds a thread for a few seconds at most, however it trickles its
/// bytes), so neither a scrape nor a stalled client ever blocks the
/// cooperative pool or takes the threads replication I/O needs
/// (`BlockingPool.shared`). Values are read from the status board at scrape
/// time. One request per connection; `HEAD` is answered too, other paths get
/// 404, other methods 405.
///
/// If the address is taken, the failure is logged once and binding is
/// retried every 5 seconds: everything else guardian does keeps running.
struct MetricsService: Service {
    let address: LoopbackAddress
    let board: StatusBoard
    let logger: Logger
    /// Where every scrape records the snapshot's figures (swift-metrics → swift-prometheus).
    let pipeline = MetricsPipeline()
    /// Connections served at once; more are answered 503 at once.
    static let maxConcurrent = 8
    /// 503 answers being written at once; connections beyond that are closed unanswered.
    static let maxRefusing = 4
    /// The endpoint's threads: at most one per connection it handles at once.
    static let pool = BlockingPool(name: "guardian-metrics", threads: 1, maxThreads: maxConcurrent + maxRefusing)

    func run() async throws {
        guard let listener = await bind() else { return }
        logger.event(.metricsServerListening, ["address": "\(address)"])
        let serving = InFlight(), refusing = InFlight()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // Not cancelOnGracefulShutdown(): the stop below ends the loop, and
                // the listener closes the connections still queued.
                for await fd in listener.connections {
                    if serving.enter() <= Self.maxConcurrent {
                        group.addTask {
                            await serve(fd)
                            serving.leave()
                        }
                        continue
                    }
                    serving.leave()
                    if refusing.enter() <= Self.maxRefusing {
                        group.addTask {
                            let reply = HTTPServing.response(status: 503, body: Array("guardian is busy: too many scrapes at once\n".utf8), headers: [("Retry-After", "1")])
                            await Self.pool.run { HTTPServing.finish(fd: fd, reply, peer: "metrics client", sendTimeoutMS: 1000, drainMS: 250) }
                            refusing.leave()
                        }
                        continue
                    }
                    refusing.leave()
                    // A flood: closed unanswered (closing a socket does not block).
                    close(fd)
                }
            }
        } onGracefulShutdown: {
            listener.stop()
        }
        listener.stop()
        await listener.closed()
    }

    /// Binds, retrying every 5 s while that fails; nil on shutdown.
    private func bind() async -> SocketListener? {
        var reported = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let fd = try address.listen()
                if reported { logger.event(.metricsServerListening, level: .debug, ["address": "\(address)", "retried": "true"]) }
                return SocketListener(listening: fd, threadName: "guardian-metrics-accept")
            } catch {
                if !reported {
                    logger.event(.metricsServerFailed, level: .error, ["address": "\(address)", "error": "\(error)", "retry_ms": "5000"])
                    reported = true
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(5)) }
            }
        }
        return nil
    }

    /// One exchange: read the request head, answer, close.
    private func serve(_ fd: Int32) async {
        let head = await Self.pool.run { HTTPServing.readHead(fd: fd) }
        let reply: [UInt8]
        switch head {
        case .failure(.timedOut), .failure(.closed):
            await Self.pool.run { _ = close(fd) }
            return
        case .failure(.tooLarge):
            reply = HTTPServing.response(status: 431, body: Array("request head larger than \(HTTPServing.maxHeadBytes) bytes\n".utf8))
        case .failure(.malformed(let why)):
            reply = HTTPServing.response(status: 400, body: Array("bad request: \(why)\n".utf8))
        case .success(let request):
            reply = await respond(to: request)
        }
        await Self.pool.run { HTTPServing.finish(fd: fd, reply, peer: "metrics client") }
    }

    func respond(to request: HTTPRequestHead) async -> [UInt8] {
        let isHead = request.method == "HEAD"
        // DNS rebinding: a web page whose name now resolves to 127.0.0.1 must
        // not read the metrics from the visitor's browser. Browsers always
        // send the page's own name as Host.
        guard Self.isAllowedHost(request.host, address: address) else {
            return HTTPServing.response(
                status: 421, body: Array("misdirected request: guardian answers only to Host localhost or a loopback address\n".utf8), head: isHead)
        }
        guard request.path == "/metrics" else {
            return HTTPServing.response(status: 404, body: Array("not found: guardian serves GET /metrics only\n".utf8), head: isHead)
        }
        guard request.method == "GET" || isHead else {
            return HTTPServing.response(status: 405, body: Array("method not allowed: use GET or HEAD\n".utf8), headers: [("Allow", "GET, HEAD")])
        }
        let doc = await board.document()
        let text = GuardianMetrics.render(doc, pipeline: pipeline)
        return HTTPServing.response(status: 200, contentType: GuardianMetrics.contentType, body: Array(text.utf8), head: isHead)
    }
}

extension MetricsService {
    /// `localhost`, a loopback IP (127.0.0.0/8, ::1) or the configured host,
    /// with or without a port; no Host header at all (HTTP/1.0) is fine.
    static func isAllowedHost(_ header: String?, address: LoopbackAddress) -> Bool {
        guard let header else { return true }
        var host = header.lowercased()
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            host = String(host[..<colon])
        }
        if host.hasSuffix(".") { host.removeLast() }
        if host == "localhost" || host == address.host.lowercased() { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return host == "::1" || withUnsafeBytes(of: v6) { $0.dropLast().allSatisfy { $0 == 0 } && $0.last == 1 } }
        return false
    }
}

/// Connections being served by `MetricsService`.
private final class InFlight: Sendable {
    private let count = Atomic<Int>(0)
    /// Counts one more and returns the new count.
    func enter() -> Int { count.add(1, ordering: .relaxed).newValue }
    func leave() { count.subtract(1, ordering: .relaxed) }
}
