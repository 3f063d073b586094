import Foundation
import Platform

/// Sends alerts with Platform's libcurl `HTTPClient` (TLS verified; the
/// transfer runs on the client's own thread pool).
public struct HTTPAlertTransport: AlertTransport {
    let client: HTTPClient

    public init(client: HTTPClient = .shared) {
        self.client = client
    }

    public func post(_ request: AlertRequest, timeout: Duration) async throws -> Int {
        let headers = request.headers.sorted { $0.key < $1.key }.map { HTTPHeader($0.key, $0.value) }
        let response = try await client.perform(HTTPRequest(
            method: "POST", url: request.url, headers: headers, body: .bytes(request.body),
            response: .memory(limit: 64 * 1024), connectTimeout: min(timeout, .seconds(5)), timeout: timeout,
            stallTimeout: timeout))
        return response.status
    }
}
