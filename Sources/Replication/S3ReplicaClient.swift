import Foundation
import Logging
import Platform
import Synchronization

/// A replica in an S3 bucket (AWS or an S3-compatible store), in Litestream
/// 0.5's layout:
///
///     <path>/<level as %04x>/<min 16 hex>-<max 16 hex>.ltx
///     metadata x-amz-meta-litestream-timestamp = the LTX timestamp, RFC 3339 (nanoseconds), UTC
///
/// Requests are signed by libcurl (`CURLOPT_AWS_SIGV4`, service `s3`). Every
/// request carries `x-amz-content-sha256` (libcurl 7.88 does not add it, and
/// S3 requires it); query strings are built here already canonical (sorted by
/// name, RFC 3986 encoded) because libcurl signs them verbatim. Uploads send
/// `Content-MD5` (the server verifies the body) and the returned ETag is
/// compared with the MD5 we computed. Payloads above `partSize` go up as a
/// multipart upload. Listings page through ListObjectsV2 continuation tokens.
///
/// Errors name the bucket, the operation, the key and S3's error code, never
/// a credential. Transient failures (connection refused, timeouts, 5xx,
/// throttling) are retried with backoff; permanent ones (bad credentials,
/// missing bucket, access denied) fail at once.
public struct S3ReplicaClient: ReplicaClient, ReplicaRequestCounting {
    public let location: S3Location
    public var target: ReplicaTarget { .s3(location) }
    public let options: RemoteClientOptions
    private let http: HTTPClient
    private let endpoint: Endpoint
    private let counter: RequestCounter

    /// Credentials missing from `location` (a replica given as a bare
    /// `s3://` URL on the command line) come from `environment`:
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, then LITESTREAM_ACCESS_KEY_ID /
    /// LITESTREAM_SECRET_ACCESS_KEY, as with Litestream.
    public init(
        _ location: S3Location, options: RemoteClientOptions = .standard, http: HTTPClient = .shared,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        guard !location.bucket.isEmpty else { throw ReplicaError(.permanent, "s3 replica: the bucket name is empty") }
        var location = location
        func env(_ names: String...) -> String? { names.lazy.compactMap { environment[$0] }.first { !$0.isEmpty } }
        if location.accessKeyID?.isEmpty ?? true { location.accessKeyID = env("AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID") }
        if location.secretAccessKey?.isEmpty ?? true {
            location.secretAccessKey = env("AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY").map(Secret.init)
        }
        guard location.accessKeyID?.isEmpty == false, location.secretAccessKey?.isEmpty == false else {
            throw ReplicaError(.permanent, "s3 replica bucket \(location.bucket): no credentials; set access-key-id and secret-access-key in the configuration or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
        }
        self.location = location
        self.options = options
        self.http = http
        self.endpoint = try Endpoint(location)
        self.counter = RequestCounter()
    }

    public var requestCount: Int { counter.value.load(ordering: .relaxed) }

    // MARK: - Layout

    /// `<path>/<level %04x>/`
    public func prefix(level: Int) -> String {
        let hex = String(level, radix: 16)
        return "\(location.path)/\(String(repeating: "0", count: max(0, 4 - hex.count)))\(hex)/"
    }

    public func key(of file: LTXFileInfo) -> String { prefix(level: file.level) + file.name }

    private var signer: HTTPRequest.AWSSigV4 {
        HTTPRequest.AWSSigV4(
            provider: "aws:amz:\(location.region):s3",
            accessKeyID: location.accessKeyID ?? "",
            secretAccessKey: location.secretAccessKey ?? Secret(""))
    }

    // MARK: - ReplicaClient

    public func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo] {
        let prefix = prefix(level: level)
        var files: [LTXFileInfo] = []
        for object in try await listObjects(prefix: prefix) {
            let name = String(object.key.dropFirst(prefix.count))
            guard let (lo, hi) = try LTXNaming.listed(fileName: name, display: "\(target.destination) L\(level)/\(name)") else { continue }
            files.append(LTXFileInfo(level: level, minTXID: lo, maxTXID: hi, size: object.size, createdAt: object.lastModified))
        }
        files.sort()
        if exactTimestamps, !files.isEmpty {
            files = try await withExactTimestamps(files)
        }
        return files
    }

    /// One HEAD per file (at most 16 at a time) for `litestream-timestamp`;
    /// files without it keep LastModified.
    private func withExactTimestamps(_ files: [LTXFileInfo]) async throws -> [LTXFileInfo] {
        var result = files
        try await withThrowingTaskGroup(of: (Int, Date?).self) { group in
            var next = 0
            func add() {
                let index = next
                let file = files[index]
                next += 1
                group.addTask {
                    let response = try await self.send("HEAD", key: self.key(of: file), operation: "HEAD")
                    return (index, response.header("x-amz-meta-litestream-timestamp").flatMap(RFC3339.parse))
                }
            }
            while next < min(16, files.count) { add() }
            while let (index, date) = try await group.next() {
                if let date { result[index].createdAt = date }
                if next < files.count { add() }
            }
        }
        return result
    }

    @discardableResult
    public func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo {
        let size = try contents.size()
        let info = LTXFileInfo(level: level, minTXID: minTXID, maxTXID: maxTXID, size: size, createdAt: createdAt)
        let key = key(of: info)
        let metadata = [HTTPHeader("x-amz-meta-litestream-timestamp", RFC3339.format(createdAt))]
        if size > location.partSize {
            try await multipartUpload(key: key, contents: contents, size: size, metadata: metadata)
        } else {
            let (body, sha, md5) = try await prepareBody(contents, offset: 0, length: size)
            try await putObject(key: key, body: body, sha256: sha, md5: md5, extraHeaders: metadata)
        }
        return info
    }

    public func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws {
        do {
            _ = try await send("GET", key: key(of: file), operation: "GET", response: .file(path: localPath))
        } catch {
            unlink(localPath)  // no empty or partial file left behind
            throw error
        }
    }

    public func readFile(_ file: LTXFileInfo) async throws -> [UInt8] {
        let limit = file.size > 0 ? Int(file.size) + (1 << 20) : 1 << 30
        return try await send("GET", key: key(of: file), operation: "GET", response: .memory(limit: limit)).body
    }

    public func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8] {
        guard count > 0 else { return [] }
        let response = try await send(
            "GET", key: key(of: file), operation: "GET (range)", headers: [HTTPHeader("Range", "bytes=0-\(count - 1)")],
            response: .memory(limit: max(count, 1 << 20)), accept: [416])
        if response.status == 416 { return [] }  // empty object
        return Array(response.body.prefix(count))
    }

    public func deleteFiles(_ files: [LTXFileInfo]) async throws {
        try await deleteKeys(files.map(key(of:)))
    }

    /// `<path>/guardian-history.json`: outside every level prefix.
    public var markerKey: String { "\(location.path)/\(ReplicaHistory.markerName)" }

    public func readMarker() async throws -> [UInt8]? {
        let response = try await send("GET", key: markerKey, operation: "GET", response: .memory(limit: 1 << 16), accept: [404])
        return response.status == 404 ? nil : response.body
    }

    public func writeMarker(_ bytes: [UInt8]) async throws {
        try await putObject(
            key: markerKey, body: .bytes(bytes), sha256: Crypto.sha256(bytes), md5: Crypto.md5(bytes), extraHeaders: [])
    }

    public func deleteAll() async throws {
        let root = location.path + "/"
        var keys: [String] = []
        for object in try await listObjects(prefix: root) {
            // Only `<4 hex>/<ltx name>` below the path: never other objects.
            let rest = object.key.dropFirst(root.count)
            let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0].count == 4, parts[0].allSatisfy(\.isHexDigit),
                  LTXNaming.parse(fileName: String(parts[1])) != nil else { continue }
            keys.append(object.key)
        }
        try await deleteKeys(keys)
    }

    // MARK: - Objects

    struct ListedObject: Sendable {
        var key: String
        var size: Int64
        var lastModified: Date
    }

    func listObjects(prefix: String) async throws -> [ListedObject] {
        var objects: [ListedObject] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try await send("GET", key: nil, query: query, operation: "LIST \(prefix)")
            guard let root = MiniXML.parse(response.body), root.name == "ListBucketResult" else {
                throw ReplicaError(.transient, "\(context): LIST \(prefix): the response is not a ListBucketResult document")
            }
            for contents in root.children(named: "Contents") {
                guard let key = contents.child("Key")?.text else { continue }
                let size = contents.child("Size").flatMap { Int64($0.text) } ?? 0
                let modified = contents.child("LastModified").flatMap { RFC3339.parse($0.text) } ?? Date(timeIntervalSince1970: 0)
                objects.append(ListedObject(key: key, size: size, lastModified: modified))
            }
            let truncated = root.child("IsTruncated")?.text == "true"
            token = truncated ? root.child("NextContinuationToken")?.text : nil
            if truncated, token == nil {
                throw ReplicaError(.transient, "\(context): LIST \(prefix): truncated listing without a continuation token")
            }
        } while token != nil
        return objects
    }

    /// Body of an upload with its hashes (computed off the cooperative pool for files).
    private func prepareBody(_ contents: LTXPayload, offset: Int64, length: Int64) async throws -> (HTTPRequest.Body, sha256: [UInt8], md5: [UInt8]) {
        switch contents {
        case .bytes(let all):
            let slice = offset == 0 && length == Int64(all.count) ? all : Array(all[Int(offset)..<Int(offset + length)])
            return (.bytes(slice), Crypto.sha256(slice), Crypto.md5(slice))
        case .file(let path):
            let (sha, md5, read) = try await BlockingPool.shared.run { try Crypto.Digest.file(path, offset: offset, length: length) }
            guard read == length else {
                throw ReplicaError(.permanent, "\(path) changed size while being uploaded (read \(read) of \(length) bytes at offset \(offset))")
            }
            return (.file(path: path, offset: offset, length: length), sha, md5)
        }
    }

    func putObject(key: String, body: HTTPRequest.Body, sha256: [UInt8], md5: [UInt8], extraHeaders: [HTTPHeader]) async throws {
        let headers = [
            HTTPHeader("Content-Type", "application/octet-stream"),
            HTTPHeader("Content-MD5", Crypto.base64(md5)),
        ] + extraHeaders
        let response = try await send("PUT", key: key, operation: "PUT", headers: headers, body: body, sha256: Crypto.hex(sha256))
        try verifyETag(response, expected: Crypto.hex(md5), operation: "PUT", key: key)
    }

    /// Compares the returned ETag with the MD5 we sent, unless the object is
    /// encrypted with KMS or a customer key (then S3's ETag is not an MD5;
    /// `Content-MD5` has already made the server check the body).
    private func verifyETag(_ response: HTTPResponse, expected: String, operation: String, key: String, inBody: Bool = false) throws {
        let found = inBody ? MiniXML.parse(response.body)?.child("ETag")?.text : response.header("ETag")
        guard let raw = found else {
            throw ReplicaError(.transient, "\(context): \(operation) \(key): the response has no ETag")
        }
        if let sse = response.header("x-amz-server-side-encryption"), sse.hasPrefix("aws:kms") { return }
        if response.header("x-amz-server-side-encryption-customer-algorithm") != nil { return }
        let etag = raw.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")).lowercased()
        guard etag == expected else {
            throw ReplicaError(.transient, "\(context): \(operation) \(key): the stored object's ETag \(etag) does not match the uploaded body's MD5 \(expected)")
        }
    }

    private func multipartUpload(key: String, contents: LTXPayload, size: Int64, metadata: [HTTPHeader]) async throws {
        let start = try await send(
            "POST", key: key, query: [("uploads", "")], operation: "CreateMultipartUpload",
            headers: [HTTPHeader("Content-Type", "application/octet-stream")] + metadata)
        guard let doc = MiniXML.parse(start.body), let uploadID = doc.child("UploadId")?.text, !uploadID.isEmpty else {
            throw ReplicaError(.transient, "\(context): CreateMultipartUpload \(key): no UploadId in the response")
        }
        do {
            var parts: [(number: Int, etag: String, md5: [UInt8])] = []
            var offset: Int64 = 0
            var number = 1
            while offset < size {
                let length = min(location.partSize, size - offset)
                let (body, sha, md5) = try await prepareBody(contents, offset: offset, length: length)
                let response = try await send(
                    "PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], operation: "UploadPart \(number)",
                    headers: [HTTPHeader("Content-MD5", Crypto.base64(md5))], body: body, sha256: Crypto.hex(sha))
                try verifyETag(response, expected: Crypto.hex(md5), operation: "UploadPart \(number)", key: key)
                parts.append((number, response.header("ETag") ?? "", md5))
                offset += length
                number += 1
            }
            var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            for part in parts {
                xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(MiniXML.escape(part.etag))</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            let expected = Crypto.hex(Crypto.md5(parts.flatMap(\.md5))) + "-\(parts.count)"
            let response: HTTPResponse
            do {
                response = try await send(
                    "POST", key: key, query: [("uploadId", uploadID)], operation: "CompleteMultipartUpload",
                    headers: [HTTPHeader("Content-Type", "application/xml")], body: .bytes(body), sha256: Crypto.sha256Hex(body),
                    bodyErrors: true)
            } catch let e as ReplicaError where e.kind == .notFound {
                // A retried Complete whose first attempt succeeded: the upload
                // is gone because the object exists. Check that it is ours.
                let head = try await send("HEAD", key: key, operation: "HEAD")
                try verifyETag(head, expected: expected, operation: "CompleteMultipartUpload", key: key)
                return
            }
            try verifyETag(response, expected: expected, operation: "CompleteMultipartUpload", key: key, inBody: true)
        } catch {
            // Best effort: do not leave the parts behind (they cost money).
            _ = try? await send("DELETE", key: key, query: [("uploadId", uploadID)], operation: "AbortMultipartUpload", retry: RetryPolicy.none)
            throw error
        }
    }

    func deleteKeys(_ keys: [String]) async throws {
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 1000, keys.count)]
            start += batch.count
            var xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for key in batch { xml += "<Object><Key>\(MiniXML.escape(key))</Key></Object>" }
            xml += "</Delete>"
            let body = Array(xml.utf8)
            let response = try await send(
                "POST", key: nil, query: [("delete", "")], operation: "DeleteObjects",
                headers: [HTTPHeader("Content-Type", "application/xml"), HTTPHeader("Content-MD5", Crypto.base64(Crypto.md5(body)))],
                body: .bytes(body), sha256: Crypto.sha256Hex(body))
            guard let doc = MiniXML.parse(response.body) else { continue }
            let failures = doc.children(named: "Error").filter { $0.child("Code")?.text != "NoSuchKey" }
            if let first = failures.first {
                let code = first.child("Code")?.text ?? "?"
                let key = first.child("Key")?.text ?? "?"
                let transient = ["InternalError", "ServiceUnavailable", "SlowDown"].contains(code)
                throw ReplicaError(transient ? .transient : .permanent, "\(context): DeleteObjects: \(failures.count) of \(batch.count) keys not deleted; first: \(key): \(code)")
            }
        }
    }

    // MARK: - Requests

    var context: String { "s3 replica bucket \(location.bucket) (\(endpoint.display))" }

    /// Sends one signed request with retries; returns a 2xx response (or a
    /// status in `accept`) or throws a `ReplicaError` that names the bucket,
    /// the operation and S3's error code.
    func send(
        _ method: String, key: String?, query: [(String, String)] = [], operation: String,
        headers: [HTTPHeader] = [], body: HTTPRequest.Body = .none, sha256: String = Crypto.emptySHA256Hex,
        response destination: HTTPRequest.ResponseDestination = .memory(limit: 16 << 20),
        accept: Set<Int> = [], bodyErrors: Bool = false, retry: RetryPolicy? = nil
    ) async throws -> HTTPResponse {
        let request = HTTPRequest(
            method: method, url: endpoint.url(key: key, query: query),
            headers: [HTTPHeader("x-amz-content-sha256", sha256)] + headers,
            body: body, response: destination,
            connectTimeout: options.connectTimeout, stallTimeout: options.stallTimeout,
            verifyTLS: !location.skipVerify, sigV4: signer)
        let what = key.map { "\(operation) \($0)" } ?? operation
        return try await Retry.run(retry ?? options.retry, onRetry: { attempt, error, delay in
            options.logger?.event(.replicaRequestRetrying, level: .notice, [
                "replica": "\(target.destination)", "operation": "\(what)", "attempt": "\(attempt)",
                "delay_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)",
                "error": "\(redact(String(describing: error)))",
            ])
        }) { _ in
            counter.value.add(1, ordering: .relaxed)
            let response: HTTPResponse
            do {
                response = try await http.perform(request)
            } catch let e as HTTPError {
                let cause: ReplicaError.Cause? = switch e.kind {
                case .connect: .unreachable
                case .timeout: .timeout
                case .tls: .tls
                default: nil
                }
                throw ReplicaError(e.isTransient ? .transient : .permanent, redact("\(context): \(what): \(e.message)"), cause: cause)
            }
            if response.isSuccess || accept.contains(response.status) {
                // CompleteMultipartUpload can answer 200 with an error document.
                if bodyErrors, let doc = MiniXML.parse(response.body), doc.name == "Error" {
                    throw classify(status: 500, document: doc, what: what)
                }
                return response
            }
            throw classify(status: response.status, document: MiniXML.parse(response.body), what: what)
        }
    }

    private func classify(status: Int, document: MiniXML.Element?, what: String) -> ReplicaError {
        let code = document?.child("Code")?.text ?? ""
        let message = document?.child("Message")?.text ?? ""
        var text = "\(context): \(what): HTTP \(status)"
        if !code.isEmpty { text += " \(code)" }
        if !message.isEmpty { text += ": \(message)" }
        let kind: ReplicaError.Kind
        var cause: ReplicaError.Cause?
        var hint = ""
        switch (status, code) {
        case (404, "NoSuchBucket"):
            kind = .permanent
            cause = .missingBucket
            hint = "the bucket does not exist; create it or fix the bucket name (and region/endpoint)"
        case (404, _): kind = .notFound
        case (_, "InvalidAccessKeyId"):
            kind = .permanent
            cause = .authentication
            hint = "the access key id is unknown to the server; check access-key-id / AWS_ACCESS_KEY_ID"
        case (_, "SignatureDoesNotMatch"):
            kind = .permanent
            cause = .authentication
            hint = "the signature was refused; check secret-access-key / AWS_SECRET_ACCESS_KEY and region"
        case (_, "AuthorizationHeaderMalformed"), (301, _), (_, "PermanentRedirect"):
            kind = .permanent
            cause = .wrongRegion
            hint = "the bucket is in another region or behind another endpoint; check region and endpoint"
        case (_, "RequestTimeTooSkewed"):
            kind = .permanent
            cause = .clockSkew
            hint = "the system clock is too far off; fix the time (NTP)"
        case (_, "RequestTimeout"), (_, "SlowDown"), (_, "OperationAborted"), (_, "InternalError"), (408, _), (429, _), (500...599, _):
            kind = .transient
        case (403, _):
            kind = .permanent
            cause = .accessDenied
            hint = "access was denied; check the key's permissions on this bucket and path"
        default: kind = .permanent
        }
        if !hint.isEmpty { text += " (\(hint))" }
        return ReplicaError(kind, redact(text), cause: cause)
    }

    /// Belt and braces: a server that echoed the secret in a message must
    /// not get it into logs.
    private func redact(_ text: String) -> String {
        Redactor(secrets: location.secretAccessKey.map { [$0.value] } ?? []).apply(text)
    }
}

private final class RequestCounter: Sendable {
    let value = Atomic<Int>(0)
}

// MARK: - Endpoint and URLs

extension S3ReplicaClient {
    /// Where requests go: path-style `<endpoint>/<bucket>/<key>` or
    /// virtual-hosted `<scheme>://<bucket>.<host>/<key>`.
    struct Endpoint: Sendable {
        var scheme: String
        var host: String
        var basePath: String
        var bucket: String
        var pathStyle: Bool

        init(_ location: S3Location) throws {
            var text = location.endpoint ?? "https://s3.\(location.region).amazonaws.com"
            if !text.contains("://") { text = "https://" + text }
            guard let schemeEnd = text.range(of: "://") else { throw ReplicaError(.permanent, "s3 endpoint \(text) is not a URL") }
            scheme = text[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "http" || scheme == "https" else {
                throw ReplicaError(.permanent, "s3 endpoint \(text): the scheme must be http or https")
            }
            let rest = text[schemeEnd.upperBound...]
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            host = String(rest[..<slash])
            guard !host.isEmpty, !host.contains("@") else {
                throw ReplicaError(.permanent, "s3 endpoint \(HTTPClient.redactedURL(text)): needs a host (and no user info)")
            }
            var path = String(rest[slash...])
            while path.hasSuffix("/") { path.removeLast() }
            basePath = path
            bucket = location.bucket
            // Bucket names with dots break TLS wildcard certificates in virtual-host style.
            pathStyle = location.forcePathStyle || (scheme == "https" && bucket.contains("."))
        }

        var display: String { "\(scheme)://\(host)\(basePath)" }

        func url(key: String?, query: [(String, String)]) -> String {
            var url: String
            if pathStyle {
                url = "\(scheme)://\(host)\(basePath)/\(S3Encoding.encode(bucket))"
                if let key { url += "/" + S3Encoding.encodePath(key) }
            } else {
                url = "\(scheme)://\(bucket).\(host)\(basePath)/"
                if let key { url += S3Encoding.encodePath(key) }
            }
            let q = S3Encoding.canonicalQuery(query)
            if !q.isEmpty { url += "?" + q }
            return url
        }
    }
}

/// RFC 3986 encoding as SigV4 wants it.
enum S3Encoding {
    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    static func encode(_ text: String) -> String {
        var out = ""
        for b in text.utf8 {
            if unreserved.contains(b) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// Encodes each segment of a key, keeping the slashes.
    static func encodePath(_ key: String) -> String {
        key.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }

    /// Sorted by encoded name then value; `name=` for empty values (as the canonical form requires).
    static func canonicalQuery(_ items: [(String, String)]) -> String {
        items.map { (encode($0.0), encode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }
}

// MARK: - RFC 3339 timestamps

/// Go's `time.RFC3339Nano` as Litestream writes it (`2026-11-24T20:44:50.96Z`:
/// UTC, trailing zeros of the fraction dropped), and a parser for any RFC 3339 time.
public enum RFC3339 {
    public static func format(_ date: Date) -> String {
        // Microseconds: all a Double holds reliably for current dates.
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int64((micros / 1_000_000).rounded(.down))
        var fraction = Int64(micros) - seconds * 1_000_000
        if fraction < 0 { fraction += 1_000_000; seconds -= 1 }
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        var text = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        if fraction > 0 {
            var digits = String(format: "%06lld", fraction)
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return text + "Z"
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; nil for anything else.
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for c in b[from..<(from + count)] {
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard b.count >= 20, let year = num(0, 4), b[4] == 45, let month = num(5, 2), b[7] == 45, let day = num(8, 2),
              b[10] == 84 || b[10] == 116 || b[10] == 32, let hour = num(11, 2), b[13] == 58, let minute = num(14, 2), b[16] == 58,
              let second = num(17, 2), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == 46 {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45, let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 58, let om = num(i + 4, 2) {
            offset = (oh * 3600 + om * 60) * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = timegm(&parts)
        return Date(timeIntervalSince1970: Double(epoch - offset) + fraction)
    }
}

// MARK: - A small XML reader for S3's responses

/// Enough XML for S3 (ListBucketResult, Error, InitiateMultipartUploadResult,
/// DeleteResult): elements, text, entities, CDATA, comments, the prolog.
/// Namespace prefixes and attributes are ignored. Not a general parser.
enum MiniXML {
    final class Element: @unchecked Sendable {
        let name: String
        var children: [Element] = []
        var text = ""
        init(name: String) { self.name = name }

        func child(_ name: String) -> Element? { children.first { $0.name == name } }
        func children(named name: String) -> [Element] { children.filter { $0.name == name } }
    }

    static func parse(_ bytes: [UInt8]) -> Element? {
        var stack: [Element] = []
        var root: Element?
        var i = 0
        let n = bytes.count
        func starts(_ s: String, at p: Int) -> Bool {
            let u = Array(s.utf8)
            return p + u.count <= n && Array(bytes[p..<(p + u.count)]) == u
        }
        func find(_ s: String, from p: Int) -> Int? {
            let u = Array(s.utf8)
            var q = p
            while q + u.count <= n {
                if bytes[q] == u[0], Array(bytes[q..<(q + u.count)]) == u { return q }
                q += 1
            }
            return nil
        }
        while i < n {
            if bytes[i] != UInt8(ascii: "<") {
                let end = bytes[i...].firstIndex(of: UInt8(ascii: "<")) ?? n
                if let top = stack.last { top.text += decodeEntities(String(decoding: bytes[i..<end], as: UTF8.self)) }
                i = end
                continue
            }
            if starts("<?", at: i) {
                guard let e = find("?>", from: i) else { return nil }
                i = e + 2
            } else if starts("<!--", at: i) {
                guard let e = find("-->", from: i) else { return nil }
                i = e + 3
            } else if starts("<![CDATA[", at: i) {
                guard let e = find("]]>", from: i) else { return nil }
                if let top = stack.last { top.text += String(decoding: bytes[(i + 9)..<e], as: UTF8.self) }
                i = e + 3
            } else if starts("<!", at: i) {
                guard let e = bytes[i...].firstIndex(of: UInt8(ascii: ">")) else { return nil }
                i = e + 1
            } else if starts("</", at: i) {
                guard let e = bytes[i...].firstIndex(of: UInt8(ascii: ">")) else { return nil }
                let name = localName(String(decoding: bytes[(i + 2)..<e], as: UTF8.self).trimmingCharacters(in: .whitespaces))
                guard let top = stack.popLast(), top.name == name else { return nil }
                if stack.isEmpty { root = top }
                i = e + 1
            } else {
                guard let e = bytes[i...].firstIndex(of: UInt8(ascii: ">")) else { return nil }
                var inner = String(decoding: bytes[(i + 1)..<e], as: UTF8.self)
                let selfClosing = inner.hasSuffix("/")
                if selfClosing { inner.removeLast() }
                let name = localName(String(inner.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).first ?? ""))
                guard !name.isEmpty else { return nil }
                let element = Element(name: name)
                if let top = stack.last { top.children.append(element) } else if root != nil { return nil }
                if selfClosing {
                    if stack.isEmpty { root = element }
                } else {
                    stack.append(element)
                }
                i = e + 1
            }
        }
        guard stack.isEmpty else { return nil }
        return root
    }

    private static func localName(_ name: String) -> String {
        if let colon = name.lastIndex(of: ":") { return String(name[name.index(after: colon)...]) }
        return name
    }

    static func decodeEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";"), rest.distance(from: amp, to: semi) <= 10 else {
                out += "&"
                rest = rest[rest.index(after: amp)...]
                continue
            }
            let entity = rest[rest.index(after: amp)..<semi]
            var scalar: Unicode.Scalar?
            switch entity {
            case "amp": scalar = "&"
            case "lt": scalar = "<"
            case "gt": scalar = ">"
            case "quot": scalar = "\""
            case "apos": scalar = "'"
            default:
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init)
                }
            }
            if let scalar {
                out.unicodeScalars.append(scalar)
            } else {
                out += rest[amp...semi]
            }
            rest = rest[rest.index(after: semi)...]
        }
        out += rest
        return out
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
