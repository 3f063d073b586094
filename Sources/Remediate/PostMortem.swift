import Foundation
import Platform

/// Renders an incident as a blameless post-mortem in Markdown, following the
/// team's template (title, date, duration, severity, timeline, root cause,
/// impact, action items), from what guardian recorded — nothing estimated.
public enum PostMortem {
    public static func render(_ r: IncidentRecord, now: Date = Date()) -> String {
        var out: [String] = []
        out.append("# Post-mortem: Database Corruption Incident")
        out.append("")
        out.append("## Incident \(r.id): SQLite Database Corruption in \(r.database)")
        out.append("**Date:** \(date(r.detectedAt))")
        let end = r.closedAt ?? now
        let durationText = Units.formatDuration(.milliseconds(Int64((end.timeIntervalSince(r.detectedAt) * 1000).rounded())))
        out.append("**Duration:** \(durationText) (\(time(r.detectedAt)) → \(r.closedAt.map(time) ?? "ongoing") UTC)")
        out.append("**Severity:** P1 - Critical")
        out.append("**Status:** \(status(r))")
        out.append("**Author:** guardian on \(r.host) (automated, blameless)")
        out.append("")

        out.append("### Timeline")
        out.append("All times UTC, \(date(r.detectedAt)).")
        for note in r.evidence.diskEvents ?? [] {
            out.append("- \(time(note.at)) — disk guard (\(note.level)): \(note.text)")
        }
        for s in r.steps {
            var line = "- \(time(s.at)) — \(s.step)"
            if !s.detail.isEmpty { line += ": \(s.detail)" }
            if let d = s.duration, d > .milliseconds(0) { line += " (\(Units.formatDuration(d)))" }
            if s.outcome == .failed { line += " **[failed]**" }
            out.append(line)
        }
        out.append("")

        out.append("### Root Cause")
        out.append("**\(r.cause.title.prefix(1).uppercased() + r.cause.title.dropFirst()).** \(r.causeExplanation)")
        out.append("")
        out.append("How it was found: \(r.suspicion.source.rawValue) — \(r.suspicion.detail).")
        if !r.confirmation.isEmpty {
            out.append("Confirmed by `PRAGMA integrity_check`:")
            out.append("```")
            out.append(contentsOf: r.confirmation.prefix(10))
            if r.confirmation.count > 10 { out.append("… \(r.confirmation.count - 10) more lines") }
            out.append("```")
        }
        out.append("")

        out.append("### Impact")
        out.append(contentsOf: impact(r).map { "- \($0)" })
        out.append("")

        out.append("### What guardian did")
        let did = actions(r)
        if did.isEmpty {
            out.append("Nothing beyond detection and alerting (\(r.mode == RemediationMode.auto.rawValue ? "see the escalation above" : "mode: \(r.mode)")).")
        } else {
            for (i, a) in did.enumerated() { out.append("\(i + 1). \(a)") }
        }
        out.append("")

        out.append("### Action Items")
        for (i, item) in actionItems(r).enumerated() { out.append("\(i + 1). \(item)") }
        out.append("")
        return out.joined(separator: "\n")
    }

    static func status(_ r: IncidentRecord) -> String {
        switch r.outcome {
        case .resolvedAutomatically: "Resolved automatically by guardian"
        case .resolvedByOperator: "Resolved by an operator (guardian escalated: \(r.escalation ?? "-"))"
        case .escalated: "Escalated to a human — \(r.escalation ?? "see timeline")"
        case .open: "Open (phase: \(r.phase.rawValue))"
        }
    }

    static func impact(_ r: IncidentRecord) -> [String] {
        var lines: [String] = []
        let bound = Units.formatDuration(.milliseconds(Int64(r.checkIntervalSeconds * 1000)))
        if let down = r.downtime, let active = r.appActiveAt {
            var text = "Downtime (measured RTO): \(Units.formatDuration(down)), from detection at \(time(r.detectedAt)) until the app was active on the verified copy at \(time(active))"
            if let stopped = r.appStoppedFor { text += "; guardian had the app stopped for \(Units.formatDuration(stopped))" }
            text += ". The corruption may have begun up to \(bound) (the check interval) before detection."
            lines.append(text)
        } else {
            lines.append("Downtime (measured RTO): not ended by guardian — the app was not brought back on a restored copy (\(r.escalation ?? r.phase.rawValue)). Detected at \(time(r.detectedAt)); the corruption may have begun up to \(bound) earlier.")
        }
        if let restored = r.restoredTXID {
            var text = "Data lost (measured RPO): "
            if let lost = r.transactionsLost, let local = r.lastLocalTXID {
                text += "\(lost) transaction\(lost == 1 ? "" : "s") — the restored copy ends at TXID \(hex(restored)); the app's last commit seen by guardian was TXID \(hex(local))"
                if let at = r.lastLocalCommitAt { text += " at \(time(at))" }
                text += "."
            } else {
                text += "the restored copy ends at TXID \(hex(restored)); the app's own last transaction was not known to guardian (replication status not wired), so the loss is bounded by time only."
            }
            if let window = r.dataWindowLost, let at = r.restoredAt {
                text += " Its newest transaction was committed at \(time(at)), \(Units.formatDuration(window)) before detection: at most the writes of that window were lost."
            }
            lines.append(text)
        } else {
            lines.append("Data lost (measured RPO): unknown — no copy was restored.")
        }
        if r.restoreAttempts > 1 {
            lines.append("Restore points tried: \(r.restoreAttempts) (newer ones failed verification).")
        }
        if !r.quarantined.isEmpty {
            let total = r.quarantined.reduce(Int64(0)) { $0 + $1.size }
            lines.append("Damaged files kept for analysis: \(r.quarantined.count) (\(Units.formatBytes(total))) in \(r.quarantineDir ?? "-").")
        }
        lines.append("Failed requests: not measured by guardian; see the application's access log between \(time(r.detectedAt)) and \(r.appActiveAt.map(time) ?? "the fix").")
        return lines
    }

    static func actions(_ r: IncidentRecord) -> [String] {
        r.steps.filter { $0.outcome == .ok && Self.actionSteps.contains($0.step) }.map { s in
            var text = "\(s.step): \(s.detail)"
            if let d = s.duration, d > .milliseconds(0) { text += " (\(Units.formatDuration(d)))" }
            return text
        }
    }

    /// Steps that are guardian's own actions (as opposed to observations).
    static let actionSteps: Set<String> = [
        IncidentStepName.stopApp, IncidentStepName.release, IncidentStepName.quarantine, IncidentStepName.restore, IncidentStepName.verify,
        IncidentStepName.swap, IncidentStepName.startApp, IncidentStepName.alert,
    ]

    static func actionItems(_ r: IncidentRecord) -> [String] {
        var items: [String] = []
        switch r.outcome {
        case .resolvedAutomatically:
            items.append("[DONE] Restore the database from the replica, verify it and restart the app (guardian, automatically)")
        case .resolvedByOperator:
            items.append("[DONE] Database repaired by an operator")
        case .escalated, .open:
            if !r.quarantined.isEmpty {
                items.append("[TODO] Bring the app back now: restore from a replica (`guardian restore`), or to return the damaged files: " +
                    r.quarantined.map { "`mv \($0.quarantined) \($0.original)`" }.joined(separator: ", "))
            } else {
                items.append("[TODO] Repair the database now: stop the app, `guardian restore` from a replica, verify with `PRAGMA integrity_check`, start the app")
            }
            if let e = r.escalation { items.append("[TODO] Fix what stopped guardian: \(e)") }
        }
        if !r.quarantined.isEmpty {
            items.append("[TODO] Review the quarantined files in \(r.quarantineDir ?? "-") and remove them once no longer needed (guardian never deletes them)")
        }
        items.append(contentsOf: r.cause.actionItems.map { "[TODO] \($0)" })
        if let lost = r.transactionsLost, lost > 0 {
            items.append("[TODO] Reconcile the \(lost) lost transaction\(lost == 1 ? "" : "s") from upstream systems or logs")
        }
        return items
    }

    // MARK: - Formatting

    static func hex(_ txid: UInt64) -> String {
        let s = String(txid, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    /// `2026-11-25`
    public static func date(_ d: Date) -> String { String(Timestamps.iso8601(d).prefix(10)) }

    /// `14:00:03.120` (UTC)
    public static func time(_ d: Date) -> String {
        let iso = Timestamps.iso8601(d)  // 2026-11-25T14:00:03.120Z
        return String(iso.dropFirst(11).dropLast())
    }
}

/// Names of the timeline's steps, shared by the recorder and the renderer.
public enum IncidentStepName {
    public static let detected = "Detected"
    public static let confirmed = "Confirmed"
    public static let alert = "Alert sent"
    public static let stopApp = "Stopped the app"
    public static let release = "Released the database files"
    public static let quarantine = "Quarantined the damaged files"
    public static let plan = "Planned the restore"
    public static let restore = "Restored from replica"
    public static let verify = "Verified the restored copy"
    public static let discard = "Rejected the restored copy"
    public static let swap = "Put the verified copy in place"
    public static let startApp = "Started the app"
    public static let resolved = "Resolved"
    public static let escalated = "Escalated"
    public static let note = "Note"
    public static let putBack = "Put the damaged files back"
}
