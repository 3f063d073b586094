import Foundation

/// Removes secret values from text: every occurrence becomes `******`;
/// access key ids (not secret, but not for display either) become `AKIA…MPLE`.
/// The one redactor: `guardian doctor`'s report (`DoctorReport.redacted`),
/// alert delivery errors (Remediate's `Alerter`), S3 error messages.
public struct Redactor: Sendable {
    /// By default shorter values are left alone: in a report that quotes many
    /// values, a one- to three-character "secret" would garble every message.
    public static let minimumLength = 4

    public var secrets: [String] = []
    public var keyIDs: [String] = []
    /// The shortest value replaced (at least 1: an empty value never is).
    public var shortest: Int

    public init(secrets: [String] = [], keyIDs: [String] = [], shortest: Int = Redactor.minimumLength) {
        self.secrets = secrets
        self.keyIDs = keyIDs
        self.shortest = max(1, shortest)
    }

    public func apply(_ text: String) -> String {
        var out = text
        // Longest first, so a secret that contains another is replaced whole.
        for s in secrets.sorted(by: { $0.count > $1.count }) where s.count >= shortest {
            out = out.replacingOccurrences(of: s, with: "******")
        }
        for id in keyIDs where id.count >= shortest {
            out = out.replacingOccurrences(of: id, with: Self.maskKeyID(id))
        }
        return out
    }

    /// `AKIAIOSFODNN7EXAMPLE` → `AKIA…MPLE`: enough to tell keys apart.
    public static func maskKeyID(_ id: String) -> String {
        id.count <= 8 ? "****" : "\(id.prefix(4))…\(id.suffix(4))"
    }
}
