/// A secret from the configuration or the environment (a secret key, a
/// password, a webhook signing key). It prints as `******` everywhere —
/// logs, status, errors, `check-config` — so it cannot leak by accident;
/// code that needs the value reads `.value` explicitly.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "******" }
    public var debugDescription: String { "******" }
    public var isEmpty: Bool { value.isEmpty }
}
