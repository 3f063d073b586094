import Foundation
import Testing

@testable import Remediate

/// The pure incident state machine: every edge, and the absence of loops.
@Suite struct IncidentMachineTests {
    typealias M = IncidentMachine
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func machine(_ mode: RemediationMode = .auto, cooldown: Duration = .seconds(600), attempts: Int = 3, lastResolved: Date? = nil) -> M {
        M(policy: .init(mode: mode, cooldown: cooldown, maxRestoreAttempts: attempts), lastResolvedAt: lastResolved)
    }

    func suspicion(_ at: Date? = nil) -> Suspicion {
        Suspicion(source: .quickCheck, detail: "Page 11: btreeInitPage() returns error code 11", at: at ?? t0)
    }

    @Test func happyPathRunsEveryPhaseInOrder() {
        var m = machine()
        var phases: [IncidentPhase] = []
        func step(_ e: M.Event) -> [M.Action] {
            let a = m.handle(e)
            phases.append(m.phase)
            return a
        }
        #expect(step(.suspicion(suspicion())) == [.confirm])
        #expect(step(.confirmed(detail: "x", at: t0)) == [.openIncident(remediating: true), .stopApp])
        #expect(step(.appStopped) == [.quarantine])
        #expect(step(.quarantined) == [.planRestore])
        #expect(step(.restorePlanned(candidates: 2, problems: "")) == [.restore(attempt: 0)])
        #expect(step(.restored) == [.verify(attempt: 0)])
        #expect(step(.verified) == [.swap])
        #expect(step(.swapped) == [.startApp])
        #expect(step(.appStarted(at: t0.addingTimeInterval(5))) == [.resolve(byOperator: false)])
        #expect(phases == [.suspect, .stoppingApp, .quarantining, .restoring, .restoring, .verifying, .swapping, .startingApp, .resolved])
        #expect(m.lastResolvedAt == t0.addingTimeInterval(5))
        #expect(!m.hasOpenIncident)
    }

    @Test func unconfirmedSuspicionReturnsToHealthyWithoutIncident() {
        var m = machine()
        _ = m.handle(.suspicion(suspicion()))
        #expect(m.handle(.notConfirmed(detail: "ok")) == [.clearSuspicion("ok")])
        #expect(m.phase == .healthy)
        _ = m.handle(.suspicion(suspicion()))
        #expect(m.handle(.inconclusive(detail: "busy")) == [.warnInconclusive("busy")])
        #expect(m.phase == .healthy)
    }

    @Test func alertOnlyModeOpensAnIncidentAndWaitsForAHuman() {
        var m = machine(.alertOnly)
        _ = m.handle(.suspicion(suspicion()))
        #expect(m.handle(.confirmed(detail: "x", at: t0)) == [.openIncident(remediating: false), .escalate(.alertOnly, restartApp: false)])
        #expect(m.phase == .awaitingOperator)
        // Further suspicions do not start a second incident.
        #expect(m.handle(.suspicion(suspicion())).allSatisfy { if case .ignored = $0 { true } else { false } })
        #expect(m.handle(.healthyAgain(at: t0.addingTimeInterval(60))) == [.resolve(byOperator: true)])
        #expect(m.phase == .resolved)
        #expect(m.lastResolvedAt == nil, "the cooldown counts automatic remediations only")
    }

    @Test func secondCorruptionWithinCooldownEscalatesInsteadOfLooping() {
        var m = machine(cooldown: .seconds(600), lastResolved: t0)
        _ = m.handle(.suspicion(suspicion(t0.addingTimeInterval(100))))
        let actions = m.handle(.confirmed(detail: "x", at: t0.addingTimeInterval(100)))
        #expect(actions == [.openIncident(remediating: false), .escalate(.withinCooldown(secondsSinceLast: 100), restartApp: false)])
        #expect(m.phase == .escalated)

        var later = machine(cooldown: .seconds(600), lastResolved: t0)
        _ = later.handle(.suspicion(suspicion(t0.addingTimeInterval(601))))
        #expect(later.handle(.confirmed(detail: "x", at: t0.addingTimeInterval(601))) == [.openIncident(remediating: true), .stopApp])
    }

    func toRestoring(_ m: inout M, candidates: Int) {
        _ = m.handle(.suspicion(suspicion()))
        _ = m.handle(.confirmed(detail: "x", at: t0))
        _ = m.handle(.appStopped)
        _ = m.handle(.quarantined)
        _ = m.handle(.restorePlanned(candidates: candidates, problems: ""))
    }

    @Test func corruptRestoredCopyTriesEarlierPointsThenEscalates() {
        var m = machine(attempts: 3)
        toRestoring(&m, candidates: 5)
        #expect(m.candidates == 3, "capped by restore-attempts")
        _ = m.handle(.restored)
        #expect(m.handle(.verifyFailed("integrity_check: page 3")) == [.discardCopy(attempt: 0), .restore(attempt: 1)])
        #expect(m.handle(.restoreFailed("checksum mismatch")) == [.restore(attempt: 2)])
        _ = m.handle(.restored)
        let last = m.handle(.verifyFailed("still bad"))
        #expect(last == [.discardCopy(attempt: 2), .escalate(.restoresExhausted(attempts: 3, last: "still bad"), restartApp: false)])
        #expect(m.phase == .escalated)
    }

    @Test func aLatePlanDoesNotRestartTheAttempts() {
        var m = machine(attempts: 2)
        toRestoring(&m, candidates: 2)
        _ = m.handle(.restoreFailed("x"))
        #expect(m.attempt == 1)
        let again = m.handle(.restorePlanned(candidates: 2, problems: ""))
        #expect(again.count == 1)
        if case .ignored = again[0] {} else { Issue.record("a second plan was accepted: \(again)") }
        #expect(m.attempt == 1)
    }

    @Test func secondCandidateThatVerifiesIsSwappedIn() {
        var m = machine()
        toRestoring(&m, candidates: 2)
        _ = m.handle(.restored)
        _ = m.handle(.verifyFailed("bad"))
        #expect(m.attempt == 1)
        #expect(m.handle(.restored) == [.verify(attempt: 1)])
        #expect(m.handle(.verified) == [.swap])
    }

    @Test func everyFailureEdgeEndsInEscalation() {
        // (events to reach the phase, failing event, expected reason, restart app?)
        let cases: [([M.Event], M.Event, EscalationReason, Bool)] = [
            ([], .appStopFailed("no such unit"), .appStopFailed("no such unit"), true),
            // Checked before stopping: the app was never stopped, so it is not started either.
            ([], .noRoom("disk full"), .noRoomToRestore("disk full"), false),
            ([.appStopped], .quarantineFailed("EACCES"), .quarantineFailed("EACCES"), true),
            ([.appStopped, .quarantined], .restorePlanned(candidates: 0, problems: "file: empty"), .noHealthyReplica("file: empty"), false),
            ([.appStopped, .quarantined, .restorePlanned(candidates: 1, problems: "")], .restoreFailed("gone"), .restoresExhausted(attempts: 1, last: "gone"), false),
            ([.appStopped, .quarantined, .restorePlanned(candidates: 1, problems: ""), .restored, .verified], .swapFailed("EXDEV"), .swapFailed("EXDEV"), false),
            ([.appStopped, .quarantined, .restorePlanned(candidates: 1, problems: ""), .restored, .verified, .swapped], .appStartFailed("Result=exit-code"), .appStartFailed("Result=exit-code"), false),
        ]
        for (path, failing, reason, restart) in cases {
            var m = machine()
            _ = m.handle(.suspicion(suspicion()))
            _ = m.handle(.confirmed(detail: "x", at: t0))
            for e in path { _ = m.handle(e) }
            let actions = m.handle(failing)
            #expect(actions.last == .escalate(reason, restartApp: restart), "\(failing)")
            #expect(m.phase == .escalated)
            #expect(m.escalation == reason)
            // Escalated is final until a check finds the database healthy.
            #expect(m.handle(.appStarted(at: t0)).count == 1)
            #expect(m.phase == .escalated)
            #expect(m.handle(.healthyAgain(at: t0)) == [.resolve(byOperator: true)])
        }
    }

    @Test func eventsOutOfPlaceAreIgnoredAndChangeNothing() {
        var m = machine()
        for e: M.Event in [.appStopped, .quarantined, .restored, .verified, .swapped, .appStarted(at: t0), .healthyAgain(at: t0), .confirmed(detail: "", at: t0)] {
            let a = m.handle(e)
            #expect(a.count == 1)
            if case .ignored = a[0] {} else { Issue.record("\(e) was not ignored in healthy") }
            #expect(m.phase == .healthy)
        }
    }

    @Test func adoptingAnInterruptedIncidentEscalates() {
        var m = machine()
        #expect(m.adopt(openIncidentIn: .restoring) == [.escalate(.interrupted(phase: "restoring"), restartApp: false)])
        #expect(m.phase == .escalated)
        var w = machine(.alertOnly)
        #expect(w.adopt(openIncidentIn: .awaitingOperator).isEmpty)
        #expect(w.phase == .awaitingOperator)
    }

    /// Random event sequences: the machine never takes more automatic steps
    /// than the longest forward path allows, so no sequence of outcomes can
    /// make it loop.
    @Test func noEventSequenceLoops() {
        var rng = SystemRandomNumberGenerator()
        let events: [M.Event] = [
            .suspicion(suspicion()), .confirmed(detail: "c", at: t0), .notConfirmed(detail: "n"), .inconclusive(detail: "i"),
            .appStopped, .appStopFailed("f"), .noRoom("f"), .quarantined, .quarantineFailed("f"), .restorePlanned(candidates: 3, problems: ""),
            .restorePlanned(candidates: 0, problems: "p"), .restored, .restoreFailed("f"), .verified, .verifyFailed("f"),
            .swapped, .swapFailed("f"), .appStarted(at: t0), .appStartFailed("f"),
        ]
        for _ in 0..<2000 {
            var m = machine(cooldown: .zero, attempts: 3)
            var automatic = 0
            for _ in 0..<60 {
                let e = events[Int.random(in: 0..<events.count, using: &rng)]
                let actions = m.handle(e)
                if actions.contains(.stopApp) { automatic = 0 }  // a new incident begins
                automatic += actions.filter {
                    switch $0 {
                    case .stopApp, .quarantine, .planRestore, .restore, .verify, .swap, .startApp: true
                    default: false
                    }
                }.count
                // One incident: stop, quarantine, plan, 3×(restore+verify), swap, start = 11.
                #expect(automatic <= 11)
            }
        }
    }
}
