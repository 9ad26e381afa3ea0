// WebTorrent 3 as a test client: downloads one .torrent into a folder and exits 0 when done.
//
//   node tests/interop/webtorrent/wt_download.mjs <torrent-file> <out-dir>
//        [--no-webseed] [--no-tracker] [--secure=0|1|2|false|true] [--timeout=SECS]
//
// No DHT, LSD, PEX, uTP, UPnP or WebRTC (package.json here leaves WebRTC out): peers come from
// the torrent's trackers and web seeds from its url-list. --no-webseed drops the url-list and
// --no-tracker the trackers (the torrent is written again without them; its info is untouched).
// --secure is WebTorrent's protocol encryption: 1 (its default: every outgoing connection opens
// with the MSE/PE handshake, plaintext allowed inside it, and is retried the same way), 2 (RC4
// only) or 0/false (the plain BitTorrent handshake).
// Prints one JSON line (done or not, from whom) on stdout; exits 1 with the reason on stderr if
// the torrent cannot be read or fails, 2 if it did not finish within the timeout.

import { readFileSync } from 'node:fs'

const args = process.argv.slice(2)
const positional = args.filter((a) => !a.startsWith('--'))
const flag = (name) => {
  const a = args.find((x) => x === `--${name}` || x.startsWith(`--${name}=`))
  if (a === undefined) return undefined
  const eq = a.indexOf('=')
  return eq < 0 ? 'true' : a.slice(eq + 1)
}
if (positional.length !== 2) {
  console.error('usage: wt_download.mjs <torrent-file> <out-dir> [--no-webseed] [--no-tracker] [--secure=0|1|2] [--timeout=SECS]')
  process.exit(64)
}
const [torrentFile, outDir] = positional
const noWebSeed = flag('no-webseed') === 'true'
const noTracker = flag('no-tracker') === 'true'
const secureFlag = flag('secure')
const secure = secureFlag === undefined ? undefined : ({ true: 1, false: 0 }[secureFlag] ?? Number(secureFlag))
const timeoutSecs = Number(flag('timeout') ?? '60')

const fail = (code, message, extra = {}) => {
  console.log(JSON.stringify({ done: false, error: message, ...extra }))
  console.error(`wt_download: ${message}`)
  process.exit(code)
}

// WebTorrent warns with a stack trace when utp-native is absent, as it is here on purpose.
const warn = console.warn
console.warn = (...w) => { if (!String(w[0]).includes('uTP not supported')) warn(...w) }
const { default: WebTorrent } = await import('webtorrent')
const { default: parseTorrent, toTorrentFile } = await import('parse-torrent')
console.warn = warn

let parsed
let torrentBytes
try {
  torrentBytes = readFileSync(torrentFile)
  parsed = await parseTorrent(torrentBytes)
  if (noWebSeed || noTracker) {
    if (noWebSeed) parsed.urlList = []
    if (noTracker) parsed.announce = []
    torrentBytes = toTorrentFile(parsed)
  }
} catch (err) {
  fail(1, `cannot read the torrent ${torrentFile}: ${err.message}`)
}

const client = new WebTorrent({
  dht: false,
  lsd: false,
  utPex: false,
  utp: false,
  natUpnp: false,
  natPmp: false,
  tracker: noTracker ? false : {},
  webSeeds: !noWebSeed,
  secure
})

const warnings = []
const wires = {} // remote address (or web seed URL) -> { type, bytes }
let torrent
const status = () => ({
  version: WebTorrent.VERSION,
  secure: client.secure,
  trackers: parsed.announce,
  web_seeds: parsed.urlList,
  progress: torrent ? torrent.progress : 0,
  downloaded: torrent ? torrent.downloaded : 0,
  peers: torrent ? torrent.numPeers : 0,
  wires,
  warnings: warnings.slice(-20)
})

const timer = setTimeout(() => fail(2, `not done after ${timeoutSecs} s`, status()), timeoutSecs * 1000)

client.on('error', (err) => fail(1, `client error: ${err.message}`, status()))
torrent = client.add(torrentBytes, { path: outDir })
torrent.on('error', (err) => fail(1, `torrent error: ${err.message}`, status()))
torrent.on('warning', (err) => warnings.push(String(err?.message ?? err)))
torrent.on('wire', (wire, addr) => {
  const entry = { type: wire.type, bytes: 0 }
  wires[addr ?? wire.remoteAddress ?? `wire${Object.keys(wires).length}`] = entry
  wire.on('download', (n) => { entry.bytes += n })
})
torrent.on('done', () => {
  clearTimeout(timer)
  // 'done' comes once every piece is verified and written; destroy closes every connection.
  client.destroy(() => {
    console.log(JSON.stringify({ done: true, ...status() }))
    process.exit(0)
  })
})
