// End-to-end interoperability checks of authority-host with standard OAuth
// client libraries: oauth4webapi (v3) and openid-client (v6), both by panva,
// plus jose for thumbprints and undici for the mutual-TLS transport.
//
// Environment:
//   AUTHORITY_HTTP_PORT  the plain listener's port (default 8080); the issuer
//                        is http://127.0.0.1:${AUTHORITY_HTTP_PORT}
//   AUTHORITY_DIR        the server's working directory (default: the
//                        repository root), where var/dev-pki lives
//
// Prints one line per check ("ok   ..." / "FAIL ...") and a closing
// "interop: N passed, N failed" line; exits non-zero on any failure.

import { X509Certificate, createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'
import * as jose from 'jose'
import * as undici from 'undici'

const here = dirname(fileURLToPath(import.meta.url))
const PORT = process.env.AUTHORITY_HTTP_PORT || '8080'
const ISSUER = `http://127.0.0.1:${PORT}`
const AUTHORITY_DIR = resolve(process.env.AUTHORITY_DIR || join(here, '..', '..'))
const PKI = join(AUTHORITY_DIR, 'var', 'dev-pki')

// ---------------------------------------------------------------------------
// reporting

let passed = 0
let failed = 0

function ok(name, detail = '') {
  passed++
  console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`)
}

function fail(name, err) {
  failed++
  const msg = err instanceof Error ? describeError(err) : String(err)
  console.log(`FAIL ${name}: ${msg}`)
}

function describeError(err) {
  let s = `${err.name}: ${err.message}`
  if (err.code) s += ` [${err.code}]`
  if (err.error) s += ` error=${err.error}`
  if (err.error_description) s += ` error_description=${JSON.stringify(err.error_description)}`
  if (err.status) s += ` status=${err.status}`
  if (err.cause && typeof err.cause === 'object' && !(err.cause instanceof Error)) {
    try {
      s += ` cause=${JSON.stringify(err.cause)}`
    } catch {}
  } else if (err.cause instanceof Error) {
    s += ` cause=${err.cause.message}`
  }
  return s
}

class CheckError extends Error {}

function expect(cond, msg) {
  if (!cond) throw new CheckError(msg)
}

// check runs one named step; a thrown error fails it. Steps that later steps
// depend on return their value; on failure they return undefined and the
// dependent steps are reported as failed (skipped) too.
async function check(name, fn) {
  try {
    const r = await fn()
    ok(name, typeof r === 'string' ? r : r && r.detail ? r.detail : '')
    return r && r.value !== undefined ? r.value : r
  } catch (err) {
    fail(name, err)
    return undefined
  }
}

function need(name, ...deps) {
  if (deps.some((d) => d === undefined)) {
    fail(name, 'skipped: an earlier step failed')
    return false
  }
  return true
}

// ---------------------------------------------------------------------------
// HTTP plumbing

// A recording fetch: every exchange (status, DPoP-Nonce, error) is kept so
// the checks can prove the server really demanded a nonce and the library
// really retried.
function recorder(base = fetch) {
  const log = []
  const f = async (url, init) => {
    const res = await base(url, init)
    let error
    if (res.status >= 400) {
      try {
        error = (await res.clone().json()).error
      } catch {}
    }
    log.push({
      url: String(url),
      status: res.status,
      nonce: res.headers.get('dpop-nonce'),
      hadProof: hasHeader(init && init.headers, 'dpop'),
      error,
      wwwAuthenticate: res.headers.get('www-authenticate'),
    })
    return res
  }
  f.log = log
  return f
}

function hasHeader(headers, name) {
  if (!headers) return false
  if (headers instanceof Headers) return headers.has(name)
  if (Array.isArray(headers)) return headers.some(([k]) => k.toLowerCase() === name)
  return Object.keys(headers).some((k) => k.toLowerCase() === name)
}

function summarize(log) {
  return log.map((e) => `${e.status}${e.error ? ` ${e.error}` : ''}${e.nonce ? ' +DPoP-Nonce' : ''}`).join(' -> ')
}

// A fetch that presents a client certificate (mutual TLS) and trusts the
// development CA for the server certificate.
function mtlsFetch(certPem, keyPem, caPem) {
  const agent = new undici.Agent({ connect: { cert: certPem, key: keyPem, ca: caPem } })
  const f = (url, init) => undici.fetch(url, { ...init, dispatcher: agent })
  f.close = () => agent.close()
  return f
}

function x5tS256(certPem) {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('base64url')
}

// jsonBody expects a 200 JSON answer and returns the parsed body.
async function jsonBody(res, what) {
  const text = await res.text()
  expect(res.status === 200, `${what}: status ${res.status}: ${text}`)
  expect((res.headers.get('content-type') || '').startsWith('application/json'), `${what}: content-type ${res.headers.get('content-type')}`)
  return JSON.parse(text)
}

async function mismatchCount() {
  const res = await fetch(`${ISSUER}/metrics`)
  expect(res.status === 200, `GET /metrics: status ${res.status}`)
  const text = await res.text()
  let sum = 0
  let seen = false
  for (const line of text.split('\n')) {
    if (!line.startsWith('authority_mtls_mismatch_total{')) continue
    if (!line.includes('reason="thumbprint-mismatch"')) continue
    seen = true
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return { sum, seen }
}

// The documented oauth4webapi DPoP nonce pattern: make the request, and if
// processing rejects with a use_dpop_nonce error, retry exactly once (the
// DPoP handle has cached the server's DPoP-Nonce meanwhile).
async function withNonceRetry(doRequest) {
  let retried = false
  try {
    return { value: await doRequest(), retried }
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    retried = true
    return { value: await doRequest(), retried }
  }
}

const insecure = { [oauth.allowInsecureRequests]: true }

// ---------------------------------------------------------------------------
// 1. metadata

console.log(`interop: issuer ${ISSUER}, server dir ${AUTHORITY_DIR}`)
console.log(
  `interop: libraries oauth4webapi ${pkgVersion('oauth4webapi')}, openid-client ${pkgVersion('openid-client')}, jose ${pkgVersion('jose')}, undici ${pkgVersion('undici')}, node ${process.version}`,
)

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(here, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

const as = await check('metadata: oauth4webapi discovery of /.well-known/oauth-authorization-server', async () => {
  const res = await oauth.discoveryRequest(new URL(ISSUER), { algorithm: 'oauth2', ...insecure })
  const md = await oauth.processDiscoveryResponse(new URL(ISSUER), res)
  expect(md.token_endpoint, 'no token_endpoint')
  expect(md.introspection_endpoint, 'no introspection_endpoint')
  expect(md.revocation_endpoint, 'no revocation_endpoint')
  expect(md.fresh_auth_endpoint, 'no fresh_auth_endpoint')
  expect(md.mtls_endpoint_aliases && md.mtls_endpoint_aliases.token_endpoint, 'no mtls_endpoint_aliases.token_endpoint')
  expect(md.mtls_endpoint_aliases.fresh_auth_endpoint, 'no mtls_endpoint_aliases.fresh_auth_endpoint')
  return { value: md, detail: `token ${md.token_endpoint}, mTLS alias ${md.mtls_endpoint_aliases.token_endpoint}` }
})

// ---------------------------------------------------------------------------
// 2. demo-bearer: client_secret_basic, introspection, revocation

if (as) {
  const c = { client_id: 'demo-bearer' }
  const auth = oauth.ClientSecretBasic('demo-bearer-secret')

  const tok = await check('bearer/oauth4webapi: client_credentials with client_secret_basic', async () => {
    const res = await oauth.clientCredentialsGrantRequest(as, c, auth, { scope: 'demo.read' }, insecure)
    const t = await oauth.processClientCredentialsResponse(as, c, res)
    expect(t.token_type === 'bearer', `token_type ${t.token_type}`)
    expect(typeof t.access_token === 'string' && t.access_token.length > 0, 'no access_token')
    return { value: t.access_token, detail: `token_type ${t.token_type}, expires_in ${t.expires_in}` }
  })

  if (need('bearer/oauth4webapi: introspect -> active true', tok)) {
    await check('bearer/oauth4webapi: introspect -> active true', async () => {
      const res = await oauth.introspectionRequest(as, c, auth, tok, insecure)
      const r = await oauth.processIntrospectionResponse(as, c, res)
      expect(r.active === true, `active ${r.active}`)
      expect(r.client_id === 'demo-bearer', `client_id ${r.client_id}`)
      return `client_id ${r.client_id}, scope ${r.scope}`
    })
    await check('bearer/oauth4webapi: revoke', async () => {
      const res = await oauth.revocationRequest(as, c, auth, tok, insecure)
      await oauth.processRevocationResponse(res)
      return `status ${res.status}`
    })
    await check('bearer/oauth4webapi: introspect after revocation -> active false', async () => {
      const res = await oauth.introspectionRequest(as, c, auth, tok, insecure)
      const r = await oauth.processIntrospectionResponse(as, c, res)
      expect(r.active === false, `active ${r.active}`)
      return 'active false'
    })
  }

  // The same with openid-client's high-level API.
  const cfg = await check('bearer/openid-client: discovery', async () => {
    const config = await client.discovery(new URL(ISSUER), 'demo-bearer', undefined, client.ClientSecretBasic('demo-bearer-secret'), {
      algorithm: 'oauth2',
      execute: [client.allowInsecureRequests],
    })
    return { value: config, detail: `issuer ${config.serverMetadata().issuer}` }
  })
  if (need('bearer/openid-client: client_credentials, introspect, revoke, introspect', cfg)) {
    await check('bearer/openid-client: client_credentials, introspect, revoke, introspect', async () => {
      const t = await client.clientCredentialsGrant(cfg, { scope: 'demo.read demo.write' })
      expect(t.token_type === 'bearer', `token_type ${t.token_type}`)
      const before = await client.tokenIntrospection(cfg, t.access_token)
      expect(before.active === true, `active before revocation ${before.active}`)
      await client.tokenRevocation(cfg, t.access_token)
      const after = await client.tokenIntrospection(cfg, t.access_token)
      expect(after.active === false, `active after revocation ${after.active}`)
      return `scope ${t.scope}; active true -> revoked -> active false`
    })
  }
}

// ---------------------------------------------------------------------------
// 3. demo-dpop: DPoP-bound client_credentials with a server nonce, then
//    /fresh-auth with Authorization: DPoP and a proof carrying ath

if (as) {
  const rec = recorder()
  const c = { client_id: 'demo-dpop' }
  const auth = oauth.ClientSecretBasic('demo-dpop-secret')
  const keyPair = await oauth.generateKeyPair('ES256')
  const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey), 'sha256')
  const DPoP = oauth.DPoP(c, keyPair)
  const opts = { DPoP, [oauth.customFetch]: rec, ...insecure }

  const tok = await check('dpop/oauth4webapi: client_credentials with DPoP (ES256), use_dpop_nonce retry', async () => {
    rec.log.length = 0
    let raw
    const { value: t, retried } = await withNonceRetry(async () => {
      const res = await oauth.clientCredentialsGrantRequest(as, c, auth, { scope: 'demo.read' }, opts)
      raw = res.clone()
      return oauth.processClientCredentialsResponse(as, c, res)
    })
    const first = rec.log[0]
    expect(retried, `no use_dpop_nonce challenge was seen (${summarize(rec.log)})`)
    expect(first.status === 400 && first.error === 'use_dpop_nonce' && first.nonce, `first answer: ${summarize([first])}`)
    expect(rec.log.length === 2 && rec.log[1].status === 200, `exchanges: ${summarize(rec.log)}`)
    const rawBody = await raw.json()
    expect(rawBody.token_type === 'DPoP', `raw token_type ${JSON.stringify(rawBody.token_type)}`)
    expect(t.token_type === 'dpop', `token_type ${t.token_type}`)
    return { value: t.access_token, detail: `${summarize(rec.log)}; token_type ${rawBody.token_type}` }
  })

  if (need('dpop/oauth4webapi: access token cnf.jkt = RFC 7638 thumbprint of the key', tok)) {
    await check('dpop/oauth4webapi: access token cnf.jkt = RFC 7638 thumbprint of the key', async () => {
      const claims = jose.decodeJwt(tok)
      expect(claims.cnf && claims.cnf.jkt === jkt, `cnf ${JSON.stringify(claims.cnf)} vs jkt ${jkt}`)
      return `jkt ${jkt}`
    })
    await check('dpop/oauth4webapi: POST /fresh-auth with Authorization: DPoP + proof with ath -> 200', async () => {
      rec.log.length = 0
      const url = new URL(as.fresh_auth_endpoint)
      const { value: res, retried } = await withNonceRetry(async () => {
        const r = await oauth.protectedResourceRequest(tok, 'POST', url, undefined, undefined, opts)
        return r
      })
      const body = await jsonBody(res, `(${summarize(rec.log)})`)
      expect(typeof body.sub === 'string' && body.sub.length > 0, `no sub in ${JSON.stringify(body)}`)
      expect(body.cnf && body.cnf.jkt === jkt, `fresh-auth cnf ${JSON.stringify(body.cnf)}`)
      return `${summarize(rec.log)}${retried ? ' (nonce retry)' : ''}; sub ${body.sub}`
    })
    await check('dpop/oauth4webapi: /fresh-auth with no cached nonce -> 401 use_dpop_nonce challenge, retry -> 200', async () => {
      // A new handle for the same key knows no nonce yet, so the resource
      // request must be challenged (RFC 9449 §9) and retried by the pattern.
      rec.log.length = 0
      const fresh = { DPoP: oauth.DPoP(c, keyPair), [oauth.customFetch]: rec, ...insecure }
      const url = new URL(as.fresh_auth_endpoint)
      const { value: res, retried } = await withNonceRetry(() => oauth.protectedResourceRequest(tok, 'POST', url, undefined, undefined, fresh))
      const body = await jsonBody(res, `(${summarize(rec.log)})`)
      const first = rec.log[0]
      expect(retried, `no use_dpop_nonce challenge was seen (${summarize(rec.log)})`)
      expect(first.status === 401 && first.nonce, `first answer: ${summarize([first])}`)
      expect(typeof body.sub === 'string' && body.sub.length > 0, `no sub in ${JSON.stringify(body)}`)
      return `${summarize(rec.log)}; challenge: ${first.wwwAuthenticate}; sub ${body.sub}`
    })
    await check('dpop/oauth4webapi: the DPoP-bound token presented as Bearer is refused (401)', async () => {
      const res = await fetch(as.fresh_auth_endpoint, { method: 'POST', headers: { authorization: `Bearer ${tok}` } })
      expect(res.status === 401, `status ${res.status}`)
      return `401 WWW-Authenticate: ${res.headers.get('www-authenticate')}`
    })
  }

  // openid-client: the library retries use_dpop_nonce by itself.
  const rec2 = recorder()
  const cfg = await check('dpop/openid-client: discovery', async () => {
    const config = await client.discovery(new URL(ISSUER), 'demo-dpop', undefined, client.ClientSecretBasic('demo-dpop-secret'), {
      algorithm: 'oauth2',
      execute: [client.allowInsecureRequests],
    })
    config[client.customFetch] = rec2
    return { value: config, detail: 'ok' }
  })
  if (need('dpop/openid-client: clientCredentialsGrant + fetchProtectedResource with automatic nonce retry', cfg)) {
    await check('dpop/openid-client: clientCredentialsGrant + fetchProtectedResource with automatic nonce retry', async () => {
      const kp = await client.randomDPoPKeyPair('ES256')
      const kjkt = await jose.calculateJwkThumbprint(await jose.exportJWK(kp.publicKey))
      const handle = client.getDPoPHandle(cfg, kp)
      const t = await client.clientCredentialsGrant(cfg, { scope: 'demo.read' }, { DPoP: handle })
      const tokenLog = summarize(rec2.log)
      expect(rec2.log[0].status === 400 && rec2.log[0].error === 'use_dpop_nonce' && rec2.log[0].nonce, `token exchanges: ${tokenLog}`)
      expect(t.token_type === 'dpop', `token_type ${t.token_type}`)
      const claims = jose.decodeJwt(t.access_token)
      expect(claims.cnf && claims.cnf.jkt === kjkt, `cnf ${JSON.stringify(claims.cnf)} vs ${kjkt}`)
      rec2.log.length = 0
      const res = await client.fetchProtectedResource(cfg, t.access_token, new URL(cfg.serverMetadata().fresh_auth_endpoint), 'POST', undefined, undefined, {
        DPoP: handle,
      })
      const body = await jsonBody(res, 'fresh-auth')
      expect(typeof body.sub === 'string' && body.sub.length > 0, `no sub in ${JSON.stringify(body)}`)
      return `token ${tokenLog}; fresh-auth ${summarize(rec2.log)}; sub ${body.sub}`
    })
  }
}

// ---------------------------------------------------------------------------
// 4. demo-mtls: tls_client_auth at the HTTPS alias, certificate-bound token,
//    /fresh-auth with the same and with a different certificate

if (as) {
  const ca = readFileSync(join(PKI, 'ca.crt'), 'utf8')
  const cert = readFileSync(join(PKI, 'demo-mtls.crt'), 'utf8')
  const key = readFileSync(join(PKI, 'demo-mtls.key'), 'utf8')
  const mfetch = mtlsFetch(cert, key, ca)
  const c = { client_id: 'demo-mtls', use_mtls_endpoint_aliases: true }
  const auth = oauth.TlsClientAuth()
  const opts = { [oauth.customFetch]: mfetch }
  const thumb = x5tS256(cert)

  const tok = await check('mtls/oauth4webapi: tls_client_auth at the HTTPS alias token endpoint', async () => {
    const res = await oauth.clientCredentialsGrantRequest(as, c, auth, { scope: 'demo.read' }, opts)
    expect(res.url === '' || res.url.startsWith('https://'), `request went to ${res.url}`)
    const t = await oauth.processClientCredentialsResponse(as, c, res)
    expect(t.token_type === 'bearer', `token_type ${t.token_type}`)
    const claims = jose.decodeJwt(t.access_token)
    expect(claims.cnf && claims.cnf['x5t#S256'] === thumb, `cnf ${JSON.stringify(claims.cnf)} vs x5t#S256 ${thumb}`)
    return { value: t.access_token, detail: `cnf.x5t#S256 ${thumb}` }
  })

  const freshURL = new URL(as.mtls_endpoint_aliases.fresh_auth_endpoint)
  if (need('mtls/oauth4webapi: /fresh-auth on the HTTPS alias with the bound certificate -> 200', tok)) {
    await check('mtls/oauth4webapi: /fresh-auth on the HTTPS alias with the bound certificate -> 200', async () => {
      const res = await oauth.protectedResourceRequest(tok, 'POST', freshURL, undefined, undefined, opts)
      const body = await jsonBody(res, 'fresh-auth')
      expect(typeof body.sub === 'string' && body.sub.length > 0, `no sub in ${JSON.stringify(body)}`)
      expect(body.cnf && body.cnf['x5t#S256'] === thumb, `fresh-auth cnf ${JSON.stringify(body.cnf)}`)
      return `sub ${body.sub}`
    })

    await check('mtls/oauth4webapi: /fresh-auth with a different certificate -> 401, thumbprint-mismatch metric +1', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'authority-interop-'))
      let other
      try {
        execFileSync(
          'openssl',
          [
            'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
            '-keyout', join(dir, 'other.key'), '-out', join(dir, 'other.crt'),
            '-days', '1', '-subj', '/CN=authority-interop-throwaway',
            '-addext', 'subjectAltName=URI:urn:stellaops:client:demo-mtls',
            '-addext', 'extendedKeyUsage=clientAuth',
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        )
        other = mtlsFetch(readFileSync(join(dir, 'other.crt'), 'utf8'), readFileSync(join(dir, 'other.key'), 'utf8'), ca)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
      const before = await mismatchCount()
      let status
      let challenge
      try {
        const res = await oauth.protectedResourceRequest(tok, 'POST', freshURL, undefined, undefined, { [oauth.customFetch]: other })
        status = res.status
      } catch (err) {
        // A 401 with WWW-Authenticate rejects with WWWAuthenticateChallengeError.
        if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err
        status = err.status
        challenge = err.cause && err.cause[0]
      } finally {
        await other.close()
      }
      expect(status === 401, `status ${status}`)
      const after = await mismatchCount()
      expect(after.seen, 'no authority_mtls_mismatch_total{reason="thumbprint-mismatch"} series at /metrics')
      expect(after.sum === before.sum + 1, `authority_mtls_mismatch_total{reason="thumbprint-mismatch"} ${before.sum} -> ${after.sum}`)
      return `401 ${challenge ? `${challenge.scheme} error=${challenge.parameters.error}` : ''}; metric ${before.sum} -> ${after.sum}`
    })
  }

  // openid-client with use_mtls_endpoint_aliases and customFetch.
  await check('mtls/openid-client: tls_client_auth via use_mtls_endpoint_aliases + customFetch', async () => {
    const config = await client.discovery(new URL(ISSUER), 'demo-mtls', { use_mtls_endpoint_aliases: true }, client.TlsClientAuth(), {
      algorithm: 'oauth2',
      execute: [client.allowInsecureRequests],
    })
    config[client.customFetch] = mfetch
    const t = await client.clientCredentialsGrant(config, { scope: 'demo.read' })
    const claims = jose.decodeJwt(t.access_token)
    expect(claims.cnf && claims.cnf['x5t#S256'] === thumb, `cnf ${JSON.stringify(claims.cnf)}`)
    const res = await client.fetchProtectedResource(config, t.access_token, freshURL, 'POST')
    const body = await jsonBody(res, 'fresh-auth')
    return `token cnf.x5t#S256 ok; fresh-auth sub ${body.sub}`
  })
  await mfetch.close()
}

console.log(`interop: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 && passed > 0 ? 0 : 1)
