import Foundation
import Logging
import DiskWatch
import Remediate
import Platform
import Replication
import ServiceLifecycle
import UnixSignals

/// `guardian run`: one ServiceGroup per configuration "generation". SIGHUP
/// loads the file again; a valid new configuration ends the current group
/// gracefully and starts the next, a bad one is refused (and logged) while
/// the old one keeps running. SIGTERM/SIGINT stop guardian gracefully.
struct Daemon {
    let configPath: String
    let logger: Logger
    /// The application run as guardian's child, if any (`--exec`, `exec:`).
    var exec: ExecChild? = nil
    let notifier = SystemdNotifier()

    /// Set by the SIGHUP handler when a new configuration was accepted.
    final class ReloadBox: @unchecked Sendable {
        private let lock = NSLock()
        private var pending: GuardianConfig?
        func set(_ c: GuardianConfig) { lock.withLock { pending = c } }
        func take() -> GuardianConfig? { lock.withLock { defer { pending = nil }; return pending } }
    }

    /// How long a reload waits for a repair under way.
    static let reloadWaitLimit: Duration = .seconds(600)

    func run(initial: GuardianConfig) async throws {
        var config = initial
        var generation = 0
        logger.event(.daemonStarted, ["version": "\(GuardianVersion.string)", "config": "\(configPath)", "pid": "\(getpid())"])
        try await withThrowingDiscardingTaskGroup { tasks in
            if let exec {
                // SIGTERM/SIGINT go to the child; its exit stops guardian.
                tasks.addTask {
                    for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                        if exec.hasStarted { exec.forward(signal.rawValue) } else { exec.abandon(signal.rawValue) }
                    }
                }
            }
            defer { tasks.cancelAll() }
            do {
                while true {
                    let box = ReloadBox()
                    try await runGeneration(config, isReload: generation > 0, box: box)
                    guard exec?.isDone != true, let next = box.take() else { break }
                    config = next
                    generation += 1
                }
            } catch {
                await stopChild()
                throw error
            }
            await stopChild()
        }
        logger.event(.daemonStopped)
    }

    /// guardian is stopping for its own reasons while the child runs: it gets
    /// SIGTERM, then SIGKILL after 10 s.
    private func stopChild() async {
        guard let exec, exec.hasStarted, !exec.isDone else { return }
        exec.forward(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: .seconds(10))
            exec.forward(SIGKILL)
        }
        _ = await exec.exited()
        killer.cancel()
    }

    private func runGeneration(_ config: GuardianConfig, isReload: Bool, box: ReloadBox) async throws {
        // Directory entries: the databases there now are known before READY.
        var discovered: [DirectoryDiscovery] = []
        for entry in config.directories {
            discovered.append(await DirectoryDiscovery.scan(entry, configured: Set(config.dbs.map(\.path)), logger: logger))
        }
        let board = StatusBoard(configPath: configPath, databasePaths: config.dbs.map(\.path) + discovered.flatMap(\.databases))
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // One alerter for the whole daemon (remediation, disk, drills): first
        // in the group so it is the last to stop.
        let store = StateStore(stateDir: config.stateDir)
        let alerter = Alerter(destinations: config.alerts, transport: HTTPAlertTransport(), store: store, logger: logger)
        services.append(.init(service: AlertService(alerter: alerter), serviceName: "alerts"))
        let control = ReplicationControl()
        let wiring = DatabaseWiring(
            stateDir: config.stateDir, alerts: config.alerts, alerter: alerter, store: store, board: board, control: control, logger: logger)
        var remediations: [RemediationService] = []
        for db in config.dbs {
            let made = wiring.services(for: db)
            // A database that cannot be replicated must not take the others down.
            services.append(.init(
                service: made.replication, successTerminationBehavior: .ignore,
                failureTerminationBehavior: .ignore, serviceName: "replication \(db.path)"))
            if let remediation = made.remediation {
                remediations.append(remediation)
                services.append(.init(service: remediation, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "remediation \(db.path)"))
            }
            if let drills = made.drills {
                services.append(.init(service: drills, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "drills \(db.path)"))
            }
        }
        let directories = discovered.map { DirectoryService(discovery: $0, wiring: wiring) }
        for d in directories {
            services.append(.init(service: d, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "directory \(d.entry.dir)"))
        }
        let replicaDirs = (config.dbs + config.directories.map(\.template)).flatMap { db in
            db.replication.replicas.compactMap { r -> String? in
                if case .file(let p) = r.target { return p }
                return nil
            }
        }
        let diskAlerts = DiskAlertBridge(alerter: alerter, store: store, databases: config.dbs.map(\.path))
        var diskConfig = config.diskWithHeadroom
        diskConfig.kept = config.keptPaths
        let disk = DiskWatchService(
            config: diskConfig, protectedPaths: config.dbs.map(\.path) + discovered.flatMap(\.databases),
            extraWatchPaths: config.dbs.map(\.path) + config.directories.map(\.dir) + replicaDirs, stateDir: config.stateDir, logger: logger,
            onStatus: { mounts in
                await board.updateDisk(mounts)
                await board.beat("disk")
            },
            onEvent: { await diskAlerts.handle($0) })
        services.append(.init(service: disk, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "disk"))
        services.append(.init(service: StatusSocketService(path: config.status.socket, board: board, logger: logger), serviceName: "status socket"))
        if let metrics = config.status.metrics, let address = try? LoopbackAddress.parse(metrics) {
            // Optional: a metrics endpoint that cannot listen must not stop guardian.
            let service = MetricsService(address: address, board: board, logger: logger)
            services.append(.init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "metrics"))
        }
        services.append(.init(service: NotifyService(board: board, notifier: notifier, logger: logger, isReload: isReload), serviceName: "sd_notify"))

        // With a child, SIGTERM/SIGINT are the child's (forwarded in `run`).
        var groupConfig = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: exec == nil ? [.sigterm, .sigint] : [], cancellationSignals: [], logger: logger)
        // systemd's TimeoutStopSec in packaging/ is 30 s: finish well inside it.
        groupConfig.maximumGracefulShutdownDuration = .seconds(20)
        groupConfig.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfig)

        let repairs = remediations
        try await withThrowingDiscardingTaskGroup { tasks in
            tasks.addTask {
                // Reload on SIGHUP for as long as this generation runs.
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    do {
                        // File reads (the YAML, imported logrotate files) stay off the cooperative pool.
                        let next = try await BlockingPool.shared.run { try GuardianConfig.load(path: configPath) }
                        notifier.reloading()
                        await board.setState(.reloading)
                        // A repair under way finishes first: cutting it short would leave the app stopped.
                        for r in repairs { await r.waitUntilIdle(timeout: Self.reloadWaitLimit, reason: "configuration reload requested") }
                        for d in directories { await d.waitUntilIdle(timeout: Self.reloadWaitLimit, reason: "configuration reload requested") }
                        box.set(next)
                        await group.triggerGracefulShutdown()
                        return
                    } catch {
                        logger.event(.configReloadRefused, level: .error, ["error": "\(error)"])
                    }
                }
            }
            if let exec {
                tasks.addTask {
                    // The child starts once every database is open (first generation).
                    await board.waitUntilDatabasesSettled()
                    if !exec.isDone { exec.start() }
                    // (nil: this generation ended first, e.g. a reload; the child runs on.)
                    guard let outcome = await exec.exited() else { return }
                    logger.event(.childExited, ["command": "\(exec.argv.first ?? "")", "status": "\(outcome.summary)"])
                    await group.triggerGracefulShutdown()
                }
            }
            do {
                try await group.run()
            } catch {
                logger.event(.internalError, level: .critical, ["error": "\(error)"])
                tasks.cancelAll()
                throw error
            }
            if box.take().map({ box.set($0); return true }) != true {
                await board.setState(.stopping)
                notifier.stopping(status: "stopping")
                logger.event(.daemonStopping)
            }
            tasks.cancelAll()
        }
    }
}
