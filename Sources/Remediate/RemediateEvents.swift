import Platform

/// Events of the Remediate module (to be listed in `GuardianEvent.all`).
extension GuardianEvent {
    public static let healthWarning = GuardianEvent(
        name: "healthWarning", id: "f5a35918b05fbf66ac25a64a96a94895", message: "database health warning")
    public static let healthRecovered = GuardianEvent(
        name: "healthRecovered", id: "4bdd39dd7d773a9d2db6724d7391783d", message: "database health back to normal")
    public static let integrityCheckPassed = GuardianEvent(
        name: "integrityCheckPassed", id: "1bd496932dd04a470a9e15a844c0e1c4", message: "integrity check passed")
    public static let integrityCheckIncomplete = GuardianEvent(
        name: "integrityCheckIncomplete", id: "551366c9c37c93521e5ea28c04f9beea", message: "integrity check stopped at its time budget")
    public static let corruptionSuspected = GuardianEvent(
        name: "corruptionSuspected", id: "40de5568b8b43c99527f52c7be8a3caf", message: "database suspected corrupt; confirming with integrity_check")
    public static let suspicionCleared = GuardianEvent(
        name: "suspicionCleared", id: "2347965ca5821ff16ab3c286f005e559", message: "integrity_check did not confirm the suspicion")
    public static let remediationLimited = GuardianEvent(
        name: "remediationLimited", id: "1c21d277bd6aaaedb7f84748dae7bd60",
        message: "no unit or stop/start command configured; corruption will be alerted, not repaired")
    public static let incidentInterrupted = GuardianEvent(
        name: "incidentInterrupted", id: "73972591eb380575ec843ce6592a5594", message: "an incident was interrupted by a guardian restart")
    public static let drillStarted = GuardianEvent(
        name: "drillStarted", id: "dd3a2a1b8f5449b889c7bcd28954bd19", message: "recovery drill started")
    public static let drillScheduled = GuardianEvent(
        name: "drillScheduled", id: "e2407d6739674b66acba14327b5194fa", message: "next recovery drill scheduled")
    public static let drillInterrupted = GuardianEvent(
        name: "drillInterrupted", id: "48df219ea3064b448cea521b2b82232e", message: "recovery drill interrupted by a shutdown; not recorded")
}

extension GuardianEvent {
    /// The events declared by Remediate.
    public static let remediateEvents: [GuardianEvent] = [
        .healthWarning, .healthRecovered, .integrityCheckPassed, .integrityCheckIncomplete,
        .corruptionSuspected, .suspicionCleared, .remediationLimited, .incidentInterrupted,
        .drillStarted, .drillScheduled, .drillInterrupted,
    ]
}
