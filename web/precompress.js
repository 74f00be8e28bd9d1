// A Vite plugin that writes NAME.gz and NAME.br next to every compressible file of the build,
// with Node's own zlib (no extra dependency). The master serves them as they are, with
// Content-Encoding, to browsers that accept them (gdos_master/console.py).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

const COMPRESSIBLE = /\.(js|mjs|css|html|svg|json|txt|map)$/
// Below this a compressed answer saves less than its headers cost.
const MIN_BYTES = 1024

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* walk(path)
    else yield path
  }
}

export default function precompress() {
  let outDir
  return {
    name: 'gdos-precompress',
    apply: 'build',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir)
    },
    closeBundle() {
      for (const path of walk(outDir)) {
        if (!COMPRESSIBLE.test(path)) continue
        const raw = readFileSync(path)
        if (raw.length < MIN_BYTES) continue
        const gz = gzipSync(raw, { level: 9 })
        const br = brotliCompressSync(raw, {
          params: {
            [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
            [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
            [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
          },
        })
        if (gz.length < raw.length) writeFileSync(`${path}.gz`, gz)
        if (br.length < raw.length) writeFileSync(`${path}.br`, br)
      }
    },
  }
}
