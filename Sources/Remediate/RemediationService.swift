import Foundation
import Logging
import Platform
import Replication
import ServiceLifecycle

/// Guards one database for as long as it runs: checkpoint health and
/// header/WAL sanity every `health-interval`, `quick_check` every
/// `integrity-interval` on its budget, and on confirmed corruption the
/// incident (stop → quarantine → restore → verify → swap → start, or an
/// escalation). Alerts are delivered by its own alerter (or a shared one).
///
/// Wiring (in `guardian run`): one per database, beside its
/// `ReplicationService`; feed it the replication status with
/// `observe(replication:)` and pass hooks that pause/reopen the replicator
/// around the swap.
public struct RemediationService: Service {
    public let database: String
    public let config: RemediationConfig
    public let remediator: Remediator
    /// How long a repair under way may go on once guardian is stopping
    /// (systemd's TimeoutStopSec in packaging/ is 30 s; the daemon stops
    /// everything within 20 s).
    public var stopBudget: Duration = .seconds(12)
    let alerter: Alerter
    let ownsAlerter: Bool
    let logger: Logger

    /// The daemon's initializer: builds the real collaborators — the state
    /// database `<stateDir>/guardian.db`, webhook delivery through libcurl,
    /// systemd (sd-bus) or the configured commands, restores from `replicas`
    /// through Replication's restore API.
    public init(
        database: String, config: RemediationConfig, replicas: [ReplicaConfig], alerts: [AlertConfig], stateDir: String,
        logger: Logger, onStatus: @escaping @Sendable (HealthStatus) async -> Void,
        hooks: RemediationHooks = .none, alerter: Alerter? = nil
    ) {
        let store = StateStore(stateDir: stateDir)
        self.init(
            database: database, config: config, store: store,
            alerter: alerter ?? Alerter(destinations: alerts, transport: HTTPAlertTransport(), store: store, logger: logger),
            ownsAlerter: alerter == nil, app: Self.appController(for: config), source: ReplicaRestoreSource(replicas: replicas),
            hooks: hooks, logger: logger, onStatus: onStatus)
    }

    /// Everything injectable (tests, benchmarks).
    public init(
        database: String, config: RemediationConfig, store: StateStore, alerter: Alerter, ownsAlerter: Bool,
        app: (any AppController)?, source: any RestoreSource, hooks: RemediationHooks = .none, logger: Logger,
        onStatus: @escaping @Sendable (HealthStatus) async -> Void
    ) {
        self.database = database
        self.config = config
        self.alerter = alerter
        self.ownsAlerter = ownsAlerter
        self.logger = logger
        remediator = Remediator(
            database: database, config: config, store: store, alerter: alerter, app: app, source: source, hooks: hooks,
            logger: logger, onStatus: onStatus)
    }

    public static func appController(for config: RemediationConfig) -> (any AppController)? {
        switch config.appControl {
        case .systemd(let unit): SystemdUnitController(unit: unit, busAddress: config.systemdBusAddress)
        case .commands(let stop, let start, let status): CommandAppController(stop: stop, start: start, status: status)
        case .none: nil
        }
    }

    /// Replication status of this database (call it from the status callback
    /// of its ReplicationService): last local commit for the RPO, lag alerts.
    public func observe(replication: DatabaseStatus) async {
        await remediator.observe(replication: replication)
    }

    /// An SQLite error another part of guardian saw on this database
    /// (SQLITE_CORRUPT/NOTADB start an incident; FULL/IOERR are evidence).
    public func report(sqliteError: SQLiteError) async {
        await remediator.report(sqliteError: SQLiteFailure(sqliteError))
    }

    /// Suspicions reported by other parts of guardian, handled one at a time
    /// beside the check loop (the machine ignores them while an incident runs).
    func handleReports() async {
        // (Ended by the cancellation `run` sends once the check loop is done;
        // not `cancelOnGracefulShutdown()`, whose merge keeps a task group of
        // two tasks per database alive: ~16 kB each of a thousand databases.)
        for await s in remediator.reported {
            await remediator.suspect(s)
        }
    }

    public func status() async -> HealthStatus { await remediator.status() }

    /// A reload waits for a repair under way (bounded) rather than cut it short.
    public func waitUntilIdle(timeout: Duration, reason: String) async {
        await remediator.waitUntilIdle(timeout: timeout, reason: reason)
    }

    public func run() async throws {
        await remediator.start()
        let alerter = alerter
        await withTaskGroup(of: Bool.self) { group in
            if ownsAlerter { group.addTask { await alerter.run(); return true } }
            let reports = Task { await handleReports() }
            // On a stop, a repair in progress goes on for `stopBudget` (its
            // quick last steps may run past it); after that guardian undoes it
            // and starts the app again rather than leave it stopped.
            let remediator = remediator
            let budget = stopBudget
            await withGracefulShutdownHandler {
                await monitor()
            } onGracefulShutdown: {
                let deadline = ContinuousClock.now + budget
                Task { await remediator.windDown(deadline: deadline) }
            }
            reports.cancel()
            await reports.value
            guard ownsAlerter else { return }
            // Let queued alerts (a resolve after the last trigger) go out, briefly.
            await alerter.finish()
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return false
            }
            _ = await group.next()
            group.cancelAll()
        }
    }

    /// The check loop; returns on graceful shutdown or cancellation. An
    /// incident runs inside a tick, so a shutdown lets it finish its steps.
    func monitor() async {
        await remediator.healthTick()
        await remediator.reconcileAlerts()
        // The loop's wake-ups; a graceful shutdown ends them (the check under
        // way finishes first).
        let (ticks, tickInput) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        guard config.mode != .off else {
            await withGracefulShutdownHandler {
                for await _ in ticks {}
            } onGracefulShutdown: {
                tickInput.finish()
            }
            return
        }
        let integrityEvery = config.integrityInterval
        // The first checks of many databases are spread out (see `IntegritySlots`).
        let firstIntegrity = min(integrityEvery, config.checkpointInterval)
        var nextIntegrity = ContinuousClock.now + firstIntegrity + IntegritySlots.shared.firstDelay(after: firstIntegrity, within: integrityEvery)
        // The first health tick somewhere in the second interval: databases
        // started together (a `dir:` entry) tick spread out, not in one burst.
        var nextHealth = ContinuousClock.now + config.checkpointInterval * Double.random(in: 1..<2)
        // The process's one ticker wakes this loop when its next check is
        // due (a one-shot timer re-armed after each round; no timer task per
        // database, and each database's checks at their own times).
        // A quiet database's health tick is answered on the ticker's thread
        // (`HealthGate`): the timer then fires again one interval later,
        // and this loop is woken only for a probe or an integrity check.
        let gate = remediator.healthGate
        let healthEvery = config.checkpointInterval
        let arm = { (at: ContinuousClock.Instant, integrityAt: ContinuousClock.Instant) in
            Ticker.shared.schedule(after: max(.zero, at - .now)) {
                let now = ContinuousClock.now
                if now < integrityAt, gate.mayAnswer() { return min(healthEvery, integrityAt - now) }
                tickInput.yield(())
                return nil
            }
        }
        var timer = arm(min(nextHealth, nextIntegrity), nextIntegrity)
        await withGracefulShutdownHandler {
            for await _ in ticks {
                let now = ContinuousClock.now
                if now >= nextHealth {
                    await remediator.healthTick()
                    nextHealth = ContinuousClock.now + config.checkpointInterval
                }
                if now >= nextIntegrity {
                    await remediator.integrityTick()
                    nextIntegrity = ContinuousClock.now + integrityEvery
                }
                timer = arm(min(nextHealth, nextIntegrity), nextIntegrity)
            }
        } onGracefulShutdown: {
            tickInput.finish()
        }
        Ticker.shared.cancel(timer)
        tickInput.finish()
    }
}

/// Spreads the first scheduled integrity checks of databases started
/// together (a `dir:` entry of thousands) so that one starts per `spacing`
/// at most, not all of them at once ten seconds after start-up: each asks
/// for the first free slot at or after its own first check. A database
/// started alone waits nothing extra; none waits more than its interval.
final class IntegritySlots: @unchecked Sendable {
    static let shared = IntegritySlots()
    static let spacing: Duration = .milliseconds(100)
    private let lock = NSLock()
    private var nextFree = ContinuousClock.now

    /// The extra delay of a first check due after `first`.
    func firstDelay(after first: Duration, within interval: Duration) -> Duration {
        let due = ContinuousClock.now + first
        return lock.withLock {
            let slot = max(due, nextFree)
            nextFree = slot + Self.spacing
            return min(slot - due, interval)
        }
    }
}

/// Restores from the configured replicas through Replication's public API:
/// `ReplicaClients.make` for listing, `Restorer` for the restore itself.
public struct ReplicaRestoreSource: RestoreSource {
    public let replicas: [ReplicaConfig]

    public init(replicas: [ReplicaConfig]) {
        self.replicas = replicas
    }

    public func plan(maxCandidates: Int) async -> CandidatePlan {
        var holdings: [ReplicaHoldings] = []
        var problems: [String] = []
        for r in replicas {
            do {
                let client = try ReplicaClients.make(r.target)
                let h = try await CandidatePlanner.holdings(of: r, client: client)
                if h.position == 0 {
                    problems.append("\(r.name) (\(r.target.destination)): empty, no LTX files")
                } else {
                    holdings.append(h)
                }
            } catch {
                problems.append("\(r.name) (\(r.target.destination)): \(error)")
            }
        }
        return CandidatePlan(candidates: CandidatePlanner.candidates(from: holdings, max: maxCandidates), problems: problems)
    }

    public func restore(_ candidate: RestoreCandidate, to path: String) async throws -> RestoredCopy {
        guard let replica = replicas.first(where: { $0.name == candidate.replica }) else {
            throw ReplicaError(.permanent, "replica \(candidate.replica) is not configured")
        }
        let client = try ReplicaClients.make(replica.target)
        // The verify step runs integrity_check (and the configured queries)
        // itself, timed as its own phase: the restorer does not repeat it.
        let options = RestoreOptions(txid: candidate.latest ? nil : candidate.txid, timestamp: nil, force: false, integrityCheck: .none)
        let result = try await Restorer().restore(client: client, to: path, options: options)
        return RestoredCopy(txid: result.txid, timestamp: result.timestamp, bytes: result.bytes)
    }
}
