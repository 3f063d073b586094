import Foundation
import Platform

extension Redactor {
    /// The secrets of one alert destination.
    public init(alert: AlertConfig, shortest: Int = Redactor.minimumLength) {
        self.init(shortest: shortest)
        add(alert)
    }

    /// An alert destination's URL (the URL is the secret of a Slack webhook),
    /// its path alone, as written and as `URL` normalises it (without a
    /// trailing slash; what an HTTP error may quote), and its key.
    public mutating func add(_ alert: AlertConfig) {
        secrets.append(alert.url.value)
        if let path = URLComponents(string: alert.url.value)?.path, path.count > 1 { secrets.append(path) }
        if let path = URL(string: alert.url.value)?.path, path.count > 1, !secrets.contains(path) { secrets.append(path) }
        if let k = alert.key?.value { secrets.append(k) }
    }
}
