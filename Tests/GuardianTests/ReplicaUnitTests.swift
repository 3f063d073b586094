import Foundation
import Platform
@testable import Replication
import Testing

/// The pure pieces under the S3 and SFTP clients: hashes, timestamps,
/// canonical query strings, URLs, the XML reader, backoff, known_hosts
/// matching; and TLS verification of the HTTP client against a real local
/// HTTPS server with a self-signed certificate.
@Suite("Replica client parts")
struct ReplicaUnitTests {
    @Test func hashesMatchKnownVectors() throws {
        #expect(Crypto.sha256Hex([UInt8]()) == Crypto.emptySHA256Hex)
        #expect(Crypto.sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Crypto.hex(Crypto.md5([UInt8]())) == "d41d8cd98f00b204e9800998ecf8427e")
        // RFC 4231 test case 2.
        #expect(Crypto.hex(Crypto.hmacSHA256(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // RFC 2202 test case 2 (HMAC-SHA1).
        #expect(Crypto.hex(Crypto.hmac(.sha1, key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
            == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")

        let dir = try TestSupport.makeTempDir("digest")
        defer { TestSupport.cleanup(dir) }
        let bytes = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/f"))
        let whole = try Crypto.Digest.file(dir + "/f")
        #expect(whole.size == Int64(bytes.count))
        #expect(whole.sha256 == Crypto.sha256(bytes) && whole.md5 == Crypto.md5(bytes))
        let part = try Crypto.Digest.file(dir + "/f", offset: 1_000_001, length: 1_500_000)
        #expect(part.sha256 == Crypto.sha256(bytes[1_000_001..<2_500_001]) && part.size == 1_500_000)
    }

    /// LTX file names: 16 lower-case hex digits each, as Litestream names
    /// them, and parsed back to the same numbers.
    @Test func ltxFileNamesAreLitestreams() {
        #expect(LTXNaming.fileName(minTXID: 1, maxTXID: 0x1f) == "0000000000000001-000000000000001f.ltx")
        #expect(LTXNaming.fileName(minTXID: 0, maxTXID: .max) == "0000000000000000-ffffffffffffffff.ltx")
        #expect(LTXNaming.hex(0xabc_def0_1234) == "00000abcdef01234")
        for (a, b) in [(UInt64(1), UInt64(1)), (0x10, 0x2000), (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)] {
            let name = LTXNaming.fileName(minTXID: a, maxTXID: b)
            #expect(name == String(format: "%016llx-%016llx.ltx", a, b))
            #expect(LTXNaming.parse(fileName: name).map { $0.min == a && $0.max == b } == true)
        }
    }

    /// A file replica whose level directory was removed under it makes the
    /// directory again at the next write (it is no longer looked up before
    /// every write).
    @Test func fileReplicaRemakesAMissingLevelDirectory() async throws {
        let dir = try TestSupport.makeTempDir("level-dir")
        defer { TestSupport.cleanup(dir) }
        let client = FileReplicaClient(root: dir + "/replica")
        _ = try await client.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1, 2, 3]), createdAt: Date())
        let level = (client.path(of: LTXFileInfo(level: 0, minTXID: 1, maxTXID: 1, size: 0, createdAt: Date())) as NSString).deletingLastPathComponent
        try FileManager.default.removeItem(atPath: level)
        _ = try await client.writeFile(level: 0, minTXID: 2, maxTXID: 2, contents: .bytes([4, 5]), createdAt: Date())
        let names = try FileManager.default.contentsOfDirectory(atPath: level)
        #expect(names == [LTXNaming.fileName(minTXID: 2, maxTXID: 2)])
    }

    @Test func rfc3339LikeLitestream() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_714_979_289.123)) == "2024-05-06T07:08:09.123Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_714_979_289)) == "2024-05-06T07:08:09Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_714_979_289.96)) == "2024-05-06T07:08:09.96Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_714_979_289.000001)) == "2024-05-06T07:08:09.000001Z")
        #expect(RFC3339.parse("2026-11-24T20:44:50.96Z").map { abs($0.timeIntervalSince1970 - 1_795_553_090.96) < 1e-6 } == true)
        #expect(RFC3339.parse("2024-05-06T07:08:09.123456789Z").map { abs($0.timeIntervalSince1970 - 1_714_979_289.123456789) < 1e-6 } == true)
        #expect(RFC3339.parse("2024-05-06T09:08:09+02:00")?.timeIntervalSince1970 == 1_714_979_289)
        #expect(RFC3339.parse("2024-05-06T07:08:09.000Z")?.timeIntervalSince1970 == 1_714_979_289)
        for bad in ["", "2024-05-06", "2024-05-06T07:08:09", "2024-13-06T07:08:09Z", "2024-05-06T07:08:09.Z", "2024-05-06T07:08:09Zjunk"] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
        for t in [0.0, 1_714_979_289.5, 1_795_553_090.001] {
            let d = Date(timeIntervalSince1970: t)
            #expect(RFC3339.parse(RFC3339.format(d)).map { abs($0.timeIntervalSince(d)) < 1e-6 } == true)
        }
    }

    @Test func canonicalQueryIsSortedAndEncoded() {
        #expect(S3Encoding.canonicalQuery([("prefix", "db/0000/"), ("list-type", "2"), ("continuation-token", "a+b=/c d~")])
            == "continuation-token=a%2Bb%3D%2Fc%20d~&list-type=2&prefix=db%2F0000%2F")
        #expect(S3Encoding.canonicalQuery([("uploads", "")]) == "uploads=")
        #expect(S3Encoding.canonicalQuery([("uploadId", "x"), ("partNumber", "10")]) == "partNumber=10&uploadId=x")
        #expect(S3Encoding.encodePath("a b/c+d/é.ltx") == "a%20b/c%2Bd/%C3%A9.ltx")
    }

    @Test func endpointsAndStyles() throws {
        func url(_ l: S3Location, key: String? = "p/0000/x.ltx", query: [(String, String)] = []) throws -> String {
            try S3ReplicaClient.Endpoint(l).url(key: key, query: query)
        }
        let aws = S3Location(bucket: "my-bucket", path: "p", region: "eu-west-1")
        #expect(try url(aws) == "https://my-bucket.s3.eu-west-1.amazonaws.com/p/0000/x.ltx")
        #expect(try url(aws, key: nil, query: [("list-type", "2")]) == "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2")
        let forced = S3Location(bucket: "my-bucket", path: "p", region: "eu-west-1", forcePathStyle: true)
        #expect(try url(forced) == "https://s3.eu-west-1.amazonaws.com/my-bucket/p/0000/x.ltx")
        let custom = S3Location(bucket: "b", path: "p", endpoint: "minio.local:9000")
        #expect(custom.forcePathStyle)
        #expect(try url(custom) == "https://minio.local:9000/b/p/0000/x.ltx")
        let dotted = S3Location(bucket: "my.bucket", path: "p")
        #expect(try url(dotted) == "https://s3.us-east-1.amazonaws.com/my.bucket/p/0000/x.ltx")
        #expect(throws: ReplicaError.self) { try S3ReplicaClient.Endpoint(S3Location(bucket: "b", path: "p", endpoint: "ftp://x")) }
        #expect(throws: ReplicaError.self) { try S3ReplicaClient.Endpoint(S3Location(bucket: "b", path: "p", endpoint: "https://u:pw@x")) }
        // Levels in %04x, as Litestream names them.
        let c = try S3ReplicaClient(S3Location(bucket: "b", path: "dbs/app", accessKeyID: "k", secretAccessKey: Secret("s")))
        #expect(c.prefix(level: 0) == "dbs/app/0000/" && c.prefix(level: 9) == "dbs/app/0009/")
        #expect(throws: ReplicaError.self) { try S3ReplicaClient(S3Location(bucket: "b", path: "p"), environment: [:]) }
        // A bare s3:// URL takes its credentials from the environment.
        let fromEnv = try S3ReplicaClient(S3Location(bucket: "b", path: "p"), environment: ["AWS_ACCESS_KEY_ID": "AK", "LITESTREAM_SECRET_ACCESS_KEY": "SK"])
        #expect(fromEnv.location.accessKeyID == "AK" && fromEnv.location.secretAccessKey == Secret("SK"))
    }

    @Test func xmlReaderHandlesS3Documents() throws {
        let doc = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
              <!-- comment --><IsTruncated>true</IsTruncated><NextContinuationToken>1ab&amp;c==</NextContinuationToken>
              <Contents><Key>p/0000/a&lt;b&gt;&#233;&#x41;.ltx</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag><LastModified>2024-05-06T07:08:09.000Z</LastModified><Owner/></Contents>
              <Contents><Key><![CDATA[p/0000/c&d.ltx]]></Key><Size>3</Size></Contents>
            </ListBucketResult>
            """
        let root = try #require(MiniXML.parse(Array(doc.utf8)))
        #expect(root.name == "ListBucketResult")
        #expect(root.child("IsTruncated")?.text == "true")
        #expect(root.child("NextContinuationToken")?.text == "1ab&c==")
        let contents = root.children(named: "Contents")
        #expect(contents.map { $0.child("Key")?.text ?? "" } == ["p/0000/a<b>éA.ltx", "p/0000/c&d.ltx"])
        #expect(contents.first?.child("ETag")?.text == "\"abc\"")
        #expect(MiniXML.parse(Array("<a><b></a>".utf8)) == nil)
        #expect(MiniXML.parse(Array("<a>".utf8)) == nil)
        #expect(MiniXML.parse(Array("<s3:Error xmlns:s3=\"x\"><s3:Code>NoSuchKey</s3:Code></s3:Error>".utf8))?.child("Code")?.text == "NoSuchKey")
        #expect(MiniXML.escape("a&<>\"'") == "a&amp;&lt;&gt;&quot;&apos;")
    }

    @Test func backoffIsCappedExponentialWithJitter() async throws {
        let p = RetryPolicy(maxAttempts: 8, initialDelay: .milliseconds(250), maxDelay: .seconds(4))
        #expect((1...7).map { p.ceiling(beforeRetry: $0) } == [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(4), .seconds(4)])
        var rng = SystemRandomNumberGenerator()
        var seen: Set<Duration> = []
        for retry in 1...7 {
            for _ in 0..<50 {
                let d = p.delay(beforeRetry: retry, using: &rng)
                #expect(d >= p.ceiling(beforeRetry: retry) / 2 && d <= p.ceiling(beforeRetry: retry))
                seen.insert(d)
            }
        }
        #expect(seen.count > 100, "jittered")

        let fast = RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(1), maxDelay: .milliseconds(2))
        let calls = Counter()
        await #expect(throws: ReplicaError.self) {
            try await Retry.run(fast) { _ in calls.bump(); throw ReplicaError(.permanent, "no") }
        }
        #expect(calls.value == 1, "permanent errors are not retried")
        calls.reset()
        await #expect(throws: ReplicaError.self) {
            try await Retry.run(fast) { _ in calls.bump(); throw ReplicaError(.transient, "again") }
        }
        #expect(calls.value == 4, "transient errors use every attempt")
        calls.reset()
        let result = try await Retry.run(fast) { attempt in
            calls.bump()
            if attempt < 3 { throw HTTPError(kind: .connect, curlCode: 7, message: "refused") }
            return attempt
        }
        #expect(result == 3 && calls.value == 3)
        #expect(!Retry.isTransient(HTTPError(kind: .tls, curlCode: 60, message: "bad cert")))
        #expect(!Retry.isTransient(CancellationError()))
    }

    @Test func knownHostsMatchesPlainAndHashedNames() async throws {
        let dir = try TestSupport.makeTempDir("kh")
        defer { TestSupport.cleanup(dir) }
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        let file = dir + "/known_hosts"
        try TestSupport.write("""
            # comment
            [127.0.0.1]:2222 ssh-ed25519 \(key)
            example.org,10.0.0.1 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ
            @revoked bad.example ssh-ed25519 \(key)

            """, to: file)
        let plain = try KnownHosts(path: file)
        #expect(plain.hostKeyMethods(host: "127.0.0.1", port: 2222) == ["ssh-ed25519"])
        #expect(plain.hostKeyMethods(host: "10.0.0.1", port: 22) == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"])
        #expect(plain.hostKeyMethods(host: "127.0.0.1", port: 22).isEmpty)
        #expect(plain.hostKeyMethods(host: "bad.example", port: 22).isEmpty)
        // Hash the file with OpenSSH itself and match again.
        let r = try await run("/usr/bin/ssh-keygen", ["-H", "-f", file])
        #expect(r.status == 0, "\(r.stderr)")
        let hashedText = try String(contentsOfFile: file, encoding: .utf8)
        #expect(hashedText.contains("|1|") && !hashedText.contains("127.0.0.1"))
        let hashed = try KnownHosts(path: file)
        #expect(hashed.hostKeyMethods(host: "127.0.0.1", port: 2222) == ["ssh-ed25519"])
        #expect(hashed.hostKeyMethods(host: "127.0.0.2", port: 2222).isEmpty)
        #expect(throws: (any Error).self) { try KnownHosts(path: dir + "/missing") }
    }

    @Test func urlsLoseTheirUserInfoInMessages() {
        #expect(HTTPClient.redactedURL("https://user:pw@host:9/p?q=1") == "https://host:9/p?q=1")
        #expect(HTTPClient.redactedURL("http://host/a@b") == "http://host/a@b")
    }

    @Test("TLS is verified by default: a self-signed server is refused unless told otherwise")
    func tlsVerifiedByDefault() async throws {
        let dir = try TestSupport.makeTempDir("tls")
        defer { TestSupport.cleanup(dir) }
        let gen = try await run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem",
            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        #expect(gen.status == 0, "\(gen.stderr)")
        let port = TestSupport.freePort()
        let script = """
            import http.server, ssl, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
                def log_message(self, *a): pass
            s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
            s.serve_forever()
            """
        let server = try await Spawned.start("/usr/bin/python3", ["-c", script, String(port), dir + "/cert.pem", dir + "/key.pem"])
        defer { server.killNow(); server.removeFiles() }
        let client = HTTPClient()
        let url = "https://127.0.0.1:\(port)/"
        let up = await TestSupport.waitUntil(timeout: .seconds(10)) {
            (try? await client.perform(HTTPRequest(method: "GET", url: url, connectTimeout: .seconds(1), timeout: .seconds(2), verifyTLS: false)))?.status == 200
        }
        #expect(up, "\(server.stderr)")
        do {
            _ = try await client.perform(HTTPRequest(method: "GET", url: url, timeout: .seconds(5)))
            Issue.record("a self-signed certificate was accepted by default")
        } catch let e as HTTPError {
            #expect(e.kind == .tls, "\(e)")
            #expect(!Retry.isTransient(e))
        }
        let ok = try await client.perform(HTTPRequest(method: "GET", url: url, timeout: .seconds(5), verifyTLS: false))
        #expect(ok.status == 200 && ok.bodyText == "ok")
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func bump() { lock.withLock { n += 1 } }
    func reset() { lock.withLock { n = 0 } }
    var value: Int { lock.withLock { n } }
}
