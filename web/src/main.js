import { createApp } from 'vue'
import 'element-plus/theme-chalk/dark/css-vars.css'
import './style.css'
import App from './App.vue'
import { router } from './router'
import { ApiError, hasSession, onUnauthorized } from './api'
import { closeLive, preconnect } from './live'
import { store } from './store'
import { i18n } from './i18n'
import { watchHealth } from './health'

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

// A failed API call was already shown where it happened (a message, its form, the outage
// banner); an action that lets it propagate is not an uncaught error of the page.
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof ApiError) event.preventDefault()
})

// The outage banner: what the master lost (database, bus), on every page.
watchHealth()

createApp(App).use(i18n).use(router).mount('#app')
