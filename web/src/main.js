import { createApp } from 'vue'
import 'element-plus/theme-chalk/dark/css-vars.css'
import './style.css'
import App from './App.vue'
import { router } from './router'
import { hasSession, onUnauthorized } from './api'
import { closeLive, preconnect } from './live'
import { store } from './store'
import { i18n } from './i18n'

// Any 401 (an expired session, a deleted user) ends up on the login page.
onUnauthorized(() => {
  store.user = null
  closeLive()
  const current = router.currentRoute.value
  if (current.name !== 'login') {
    router.replace({ name: 'login', query: { redirect: current.fullPath } })
  }
})

// With a session the page will subscribe soon: open the live socket while the rest of the
// console loads.
if (hasSession()) preconnect()

createApp(App).use(i18n).use(router).mount('#app')
