import Foundation

/// Why guardian suspects a database is corrupt.
public struct Suspicion: Sendable, Equatable, Codable {
    public enum Source: String, Sendable, Codable {
        /// The scheduled `quick_check` reported problems.
        case quickCheck = "quick_check"
        /// The database header failed its sanity checks.
        case header
        /// The WAL file is damaged (partial frame, shrank, bad header).
        case wal
        /// One of guardian's own reads got SQLITE_CORRUPT or SQLITE_NOTADB.
        case sqliteError = "sqlite-error"
        /// Reported from outside (another guardian module).
        case external
    }

    public var source: Source
    public var detail: String
    public var at: Date

    public init(source: Source, detail: String, at: Date) {
        self.source = source
        self.detail = detail
        self.at = at
    }
}

/// The incident's phases, in the order a successful remediation runs them.
public enum IncidentPhase: String, Sendable, Codable, CaseIterable {
    case healthy, suspect, confirmed
    case stoppingApp = "stopping-app"
    case quarantining, restoring, verifying, swapping
    case startingApp = "starting-app"
    case resolved
    /// Recorded and alerted, waiting for a human (alert-only mode, or cooldown).
    case awaitingOperator = "awaiting-operator"
    case escalated

    /// No further automatic step follows.
    public var isTerminal: Bool { self == .resolved || self == .escalated || self == .awaitingOperator || self == .healthy }
}

/// Why an incident was handed to a human.
public enum EscalationReason: Sendable, Equatable, Codable, CustomStringConvertible {
    case appStopFailed(String)
    case quarantineFailed(String)
    case noHealthyReplica(String)
    case restoresExhausted(attempts: Int, last: String)
    case swapFailed(String)
    case appStartFailed(String)
    case withinCooldown(secondsSinceLast: Double)
    case alertOnly
    case interrupted(phase: String)
    /// The database's filesystem has no room for a restored copy: stopping
    /// the app would only take it down on a full disk.
    case noRoomToRestore(String)
    /// The restored copy could not be verified in time (it is kept).
    case verifyInconclusive(String)
    /// guardian was stopping and could not finish the repair in time.
    case stopped(phase: String)

    public var description: String {
        switch self {
        case .appStopFailed(let e): "the app could not be stopped: \(e)"
        case .quarantineFailed(let e): "the damaged files could not be quarantined: \(e)"
        case .noHealthyReplica(let e): "no replica has a restore point: \(e)"
        case .restoresExhausted(let n, let last): "\(n) restore point\(n == 1 ? "" : "s") tried, none verified; last: \(last)"
        case .swapFailed(let e): "the restored copy could not be put in place: \(e)"
        case .appStartFailed(let e): "the app did not become active on the restored database: \(e)"
        case .withinCooldown(let s): "a second corruption \(Int(s))s after the last remediation (cooldown): not repairing again automatically"
        case .alertOnly: "remediation is set to alert-only"
        case .interrupted(let phase): "guardian restarted while the incident was in phase \(phase)"
        case .noRoomToRestore(let e): "no room to restore, so the app was left running and nothing was moved: \(e)"
        case .verifyInconclusive(let e): "the restored copy could not be verified in time (\(e)); it is kept, not discarded: verify it and put it in place by hand"
        case .stopped(let phase): "guardian was stopping while the incident was in phase \(phase) and could not finish the repair in time"
        }
    }

    /// A short machine-friendly kind for the event log and alerts.
    public var kind: String {
        switch self {
        case .appStopFailed: "app-stop-failed"
        case .quarantineFailed: "quarantine-failed"
        case .noHealthyReplica: "no-healthy-replica"
        case .restoresExhausted: "restores-exhausted"
        case .swapFailed: "swap-failed"
        case .appStartFailed: "app-start-failed"
        case .withinCooldown: "cooldown"
        case .alertOnly: "alert-only"
        case .interrupted: "interrupted"
        case .noRoomToRestore: "no-room-to-restore"
        case .stopped: "stopped"
        case .verifyInconclusive: "verify-inconclusive"
        }
    }
}

/// The pure decision-maker of one database's incidents: given its state and
/// an event, it returns the next state and the actions to run. It does no
/// I/O and reads no clock (time comes in with the events), so every edge is
/// unit-tested. The actor `Remediator` executes the actions and feeds their
/// outcomes back as events.
///
/// No loops: every edge moves forward through the phases, except
/// restoring ⇄ verifying, which is bounded by the number of restore
/// candidates (itself capped by `restore-attempts`). Every failure edge ends
/// in `escalated`. Events that make no sense in the current phase change
/// nothing and return `.ignored`.
public struct IncidentMachine: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        public var mode: RemediationMode
        public var cooldown: Duration
        public var maxRestoreAttempts: Int

        public init(mode: RemediationMode, cooldown: Duration, maxRestoreAttempts: Int) {
            self.mode = mode
            self.cooldown = cooldown
            self.maxRestoreAttempts = maxRestoreAttempts
        }
    }

    public enum Event: Sendable, Equatable {
        case suspicion(Suspicion)
        case confirmed(detail: String, at: Date)
        case notConfirmed(detail: String)
        case inconclusive(detail: String)
        case appStopped
        case appStopFailed(String)
        /// Checked before the app is stopped: no room for a restored copy.
        case noRoom(String)
        case quarantined
        case quarantineFailed(String)
        /// The restore planner found `candidates` restore points (0: none; `problems` says why).
        case restorePlanned(candidates: Int, problems: String)
        case restored
        case restoreFailed(String)
        case verified
        case verifyFailed(String)
        /// The verification ran out of time, even with more of it: no verdict.
        case verifyInconclusive(String)
        case swapped
        case swapFailed(String)
        case appStarted(at: Date)
        case appStartFailed(String)
        /// A check found the database healthy again (an operator fixed it).
        case healthyAgain(at: Date)
    }

    public enum Action: Sendable, Equatable {
        /// Run `integrity_check` and report `confirmed`, `notConfirmed` or `inconclusive`.
        case confirm
        /// Record the suspicion as cleared (no incident).
        case clearSuspicion(String)
        /// The suspicion could not be confirmed either way: warn, keep watching.
        case warnInconclusive(String)
        /// Create the incident record and raise the critical alert.
        case openIncident(remediating: Bool)
        case stopApp
        case quarantine
        case planRestore
        /// Restore candidate `attempt` (0 = the newest) into a temp file.
        case restore(attempt: Int)
        case verify(attempt: Int)
        /// Remove the rejected temp copy of `attempt` (the replica still has it).
        case discardCopy(attempt: Int)
        case swap
        case startApp
        /// Close the incident as resolved and resolve the alert.
        case resolve(byOperator: Bool)
        /// Hand over to a human: critical alert with the reason. When
        /// `restartApp`, put the app back as it was (nothing was moved).
        case escalate(EscalationReason, restartApp: Bool)
        /// The event did not apply to the current phase.
        case ignored(String)
    }

    public private(set) var phase: IncidentPhase = .healthy
    public private(set) var suspicion: Suspicion?
    public private(set) var attempt = 0
    public private(set) var candidates = 0
    /// The restore was planned once for this incident (a late duplicate must not restart the attempts).
    private var planned = false
    public private(set) var escalation: EscalationReason?
    /// When the last automatic remediation resolved (for the cooldown).
    public private(set) var lastResolvedAt: Date?
    public let policy: Policy

    public init(policy: Policy, lastResolvedAt: Date? = nil) {
        self.policy = policy
        self.lastResolvedAt = lastResolvedAt
    }

    /// An incident is open (between confirmation and resolution).
    public var hasOpenIncident: Bool {
        switch phase {
        case .healthy, .suspect, .resolved: false
        default: true
        }
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        // Detection.
        case (.healthy, .suspicion(let s)), (.resolved, .suspicion(let s)):
            suspicion = s
            phase = .suspect
            attempt = 0
            candidates = 0
            planned = false
            escalation = nil
            return [.confirm]
        case (.suspect, .notConfirmed(let detail)):
            phase = .healthy
            suspicion = nil
            return [.clearSuspicion(detail)]
        case (.suspect, .inconclusive(let detail)):
            phase = .healthy
            suspicion = nil
            return [.warnInconclusive(detail)]
        case (.suspect, .confirmed(_, let at)):
            phase = .confirmed
            if policy.mode != .auto {
                phase = .awaitingOperator
                escalation = .alertOnly
                return [.openIncident(remediating: false), .escalate(.alertOnly, restartApp: false)]
            }
            if let last = lastResolvedAt, at.timeIntervalSince(last) < policy.cooldown.seconds {
                let reason = EscalationReason.withinCooldown(secondsSinceLast: at.timeIntervalSince(last))
                phase = .escalated
                escalation = reason
                return [.openIncident(remediating: false), .escalate(reason, restartApp: false)]
            }
            phase = .stoppingApp
            return [.openIncident(remediating: true), .stopApp]

        // Remediation.
        case (.stoppingApp, .appStopped):
            phase = .quarantining
            return [.quarantine]
        case (.stoppingApp, .noRoom(let e)):
            // The app was never stopped: leave it running.
            return escalate(.noRoomToRestore(e), restartApp: false)
        case (.stoppingApp, .appStopFailed(let e)):
            // Nothing was moved; the app may still run on the damaged database.
            return escalate(.appStopFailed(e), restartApp: true)
        case (.quarantining, .quarantined):
            phase = .restoring
            return [.planRestore]
        case (.quarantining, .quarantineFailed(let e)):
            // The quarantine puts back what it moved when it fails.
            return escalate(.quarantineFailed(e), restartApp: true)
        case (.restoring, .restorePlanned(let n, let problems)) where !planned:
            planned = true
            guard n > 0 else { return escalate(.noHealthyReplica(problems), restartApp: false) }
            candidates = min(n, max(1, policy.maxRestoreAttempts))
            attempt = 0
            return [.restore(attempt: 0)]
        case (.restoring, .restored):
            phase = .verifying
            return [.verify(attempt: attempt)]
        case (.restoring, .restoreFailed(let e)):
            return nextCandidate(after: e, discard: false)
        case (.verifying, .verified):
            phase = .swapping
            return [.swap]
        case (.verifying, .verifyInconclusive(let e)):
            // A copy that may well be good is never discarded as corrupt.
            return escalate(.verifyInconclusive(e), restartApp: false)
        case (.verifying, .verifyFailed(let e)):
            return nextCandidate(after: e, discard: true)
        case (.swapping, .swapped):
            phase = .startingApp
            return [.startApp]
        case (.swapping, .swapFailed(let e)):
            return escalate(.swapFailed(e), restartApp: false)
        case (.startingApp, .appStarted(let at)):
            phase = .resolved
            lastResolvedAt = at
            return [.resolve(byOperator: false)]
        case (.startingApp, .appStartFailed(let e)):
            return escalate(.appStartFailed(e), restartApp: false)

        // A human fixed it.
        // (The cooldown counts from automatic remediations only.)
        case (.escalated, .healthyAgain), (.awaitingOperator, .healthyAgain):
            phase = .resolved
            return [.resolve(byOperator: true)]

        default:
            return [.ignored("\(event) in phase \(phase.rawValue)")]
        }
    }

    /// An incident found open in the state database after a restart: it is
    /// escalated (guardian does not resume half-done steps it cannot vouch for),
    /// or stays awaiting an operator.
    public mutating func adopt(openIncidentIn old: IncidentPhase) -> [Action] {
        if old == .awaitingOperator {
            phase = .awaitingOperator
            escalation = .alertOnly
            return []
        }
        if old == .escalated {
            phase = .escalated
            return []
        }
        return escalate(.interrupted(phase: old.rawValue), restartApp: false)
    }

    /// Where a repair found half-done after a restart goes on from.
    public enum ResumePoint: Sendable, Equatable {
        /// The damaged files are still in place: stop the app (again) and repair.
        case stopApp
        /// The damaged files are quarantined, no copy is in place: restore again.
        case restore
        /// A verified copy is in place: start the app.
        case startApp
    }

    /// An incident found open after a restart, in automatic mode, picked up
    /// where it can safely go on (steps are idempotent from these points).
    public mutating func resume(at point: ResumePoint) -> [Action] {
        attempt = 0
        candidates = 0
        planned = false
        escalation = nil
        switch point {
        case .stopApp:
            phase = .stoppingApp
            return [.stopApp]
        case .restore:
            phase = .restoring
            return [.planRestore]
        case .startApp:
            phase = .startingApp
            return [.startApp]
        }
    }

    /// guardian is stopping in the middle of a repair that cannot finish in
    /// time: the incident is escalated (the caller puts the app back first).
    public mutating func stopping() -> [Action] {
        guard hasOpenIncident, !phase.isTerminal else { return [] }
        return escalate(.stopped(phase: phase.rawValue), restartApp: false)
    }

    private mutating func escalate(_ reason: EscalationReason, restartApp: Bool) -> [Action] {
        phase = .escalated
        escalation = reason
        return [.escalate(reason, restartApp: restartApp)]
    }

    private mutating func nextCandidate(after error: String, discard: Bool) -> [Action] {
        let failed = attempt
        if failed + 1 < candidates {
            attempt = failed + 1
            phase = .restoring
            return (discard ? [.discardCopy(attempt: failed)] : []) + [.restore(attempt: attempt)]
        }
        let reason = EscalationReason.restoresExhausted(attempts: failed + 1, last: error)
        return (discard ? [.discardCopy(attempt: failed)] : []) + escalate(reason, restartApp: false)
    }
}
