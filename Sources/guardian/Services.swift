import AsyncAlgorithms
import Foundation
import Logging
import Platform
import Replication
import ServiceLifecycle

/// Serves the status socket: one request line (`status`), one JSON reply.
struct StatusSocketService: Service {
    let path: String
    let board: StatusBoard
    let logger: Logger

    func run() async throws {
        let server: UnixSocketServer
        do {
            server = try UnixSocketServer(path: path, mode: 0o660)
        } catch {
            logger.event(.statusServerFailed, level: .error, ["socket": "\(path)", "error": "\(error)"])
            throw error
        }
        logger.event(.statusServerListening, ["socket": "\(path)"])
        await withGracefulShutdownHandler {
            // Not cancelOnGracefulShutdown(): the stop below ends the loop, and
            // the server closes the connections still queued (none leaks on a reload).
            for await fd in server.connections {
                let request = await BlockingPool.shared.run { UnixSocketServer.readLine(fd: fd) }
                let reply: [UInt8]
                switch request?.trimmingCharacters(in: .whitespaces) {
                case "status", "":
                    let doc = await board.document()
                    reply = (try? Array(StatusDocument.encoder().encode(doc))) ?? []
                default:
                    reply = Array("{\"error\":\"unknown request\"}".utf8)
                }
                await BlockingPool.shared.run {
                    // send(MSG_NOSIGNAL): a client that hung up must not SIGPIPE the daemon.
                    try? SocketListener.sendAll(fd: fd, reply, peer: "status client")
                    close(fd)
                }
            }
        } onGracefulShutdown: {
            server.stop()
        }
        server.stop()
        await server.closed()
    }
}

/// Talks to systemd: READY once every database is open, STATUS when the
/// summary changes, and WATCHDOG at half the watchdog interval — but only
/// while every service loop has beaten recently, so a hung loop is caught.
struct NotifyService: Service {
    let board: StatusBoard
    let notifier: SystemdNotifier
    let logger: Logger
    /// Sent with READY=1 after a reload.
    let isReload: Bool

    func run() async throws {
        // A stop before every database settled must not wait for them.
        let board = board
        await cancelWhenGracefulShutdown { await board.waitUntilDatabasesSettled() }
        if Task.isShuttingDownGracefully || Task.isCancelled { return }
        await board.setState(.ready)
        var last = await board.summary()
        notifier.ready(status: last)
        logger.event(isReload ? .configReloaded : .daemonReady, ["status": "\(last)"])
        let watchdog = notifier.watchdogInterval
        if let watchdog { logger.event(.watchdogEnabled, ["interval_ms": "\(watchdog.milliseconds)"]) }
        let tick = watchdog.map { min($0 / 2, .seconds(1)) } ?? .seconds(1)
        for await _ in AsyncTimerSequence(interval: tick, clock: .continuous).cancelOnGracefulShutdown() {
            let summary = await board.summary()
            if summary != last {
                notifier.status(summary)
                last = summary
            }
            if let watchdog {
                let stale = await board.staleLoops(limit: watchdog)
                if stale.isEmpty {
                    notifier.watchdog()
                } else {
                    logger.event(.internalError, level: .error, ["stalled_loops": "\(stale.joined(separator: ","))"])
                }
            }
        }
    }
}

/// A database's replication, reporting to the status board when it ends
/// with an error (the board would otherwise wait for the database forever,
/// and guardian would never be ready).
struct ReportingReplicationService: Service {
    let inner: ReplicationService
    let board: StatusBoard
    let logger: Logger

    func run() async throws {
        do {
            try await inner.run()
        } catch {
            let path = inner.config.path
            logger.event(.internalError, level: .error, ["db": "\(path)", "error": "replication stopped: \(error)"])
            await board.update(DatabaseStatus(path: path, state: "error", error: "\(error)"))
            throw error
        }
    }
}
