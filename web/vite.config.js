import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import AutoImport from 'unplugin-auto-import/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'
import precompress from './precompress.js'

// The master to proxy /api to while developing (`npm run dev`); see README.md.
const master = process.env.GDOS_MASTER || 'http://127.0.0.1:8080'

export default defineConfig({
  plugins: [
    vue(),
    // Element Plus components and services (ElMessage, ...) are imported where used, with
    // their CSS, so a page only loads the widgets it shows.
    AutoImport({ resolvers: [ElementPlusResolver()], dts: false }),
    Components({ resolvers: [ElementPlusResolver()], dts: false }),
    // NAME.gz and NAME.br beside each built file, served with Content-Encoding by the master.
    precompress(),
  ],
  // vue-i18n's build flags: the composition API only, no devtools hooks in production.
  define: {
    __VUE_I18N_FULL_INSTALL__: false,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
  },
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  build: {
    outDir: fileURLToPath(new URL('../gdos_master/static', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 800,
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes('node_modules/uplot')) return 'uplot'
          if (id.includes('node_modules/vue-i18n') || id.includes('node_modules/@intlify'))
            return 'i18n'
          if (id.includes('node_modules/@vue') || id.includes('node_modules/vue')) return 'vue'
        },
      },
    },
  },
  server: {
    port: 5173,
    proxy: {
      '/api': {
        target: master,
        changeOrigin: true,
        ws: true,
        // The live channel accepts a session cookie only from a page of the master's own
        // origin; the dev server is another origin, so present the master's.
        configure(proxy) {
          proxy.on('proxyReqWs', (req) => req.setHeader('origin', master))
        },
      },
    },
  },
})
