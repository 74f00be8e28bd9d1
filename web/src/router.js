import { createRouter, createWebHistory } from 'vue-router'
import { ElMessage } from 'element-plus'
import { me } from './api'
import { i18n } from './i18n'
import { store } from './store'

const routes = [
  { path: '/login', name: 'login', component: () => import('./views/Login.vue') },
  {
    path: '/',
    component: () => import('./components/Layout.vue'),
    children: [
      { path: '', name: 'dashboard', component: () => import('./views/Dashboard.vue') },
      { path: 'nodes', name: 'nodes', component: () => import('./views/Nodes.vue') },
      { path: 'packages', name: 'packages', component: () => import('./views/Packages.vue') },
      { path: 'alerts', name: 'alerts', component: () => import('./views/Alerts.vue') },
      {
        path: 'systems/:id?',
        name: 'systems',
        component: () => import('./views/Systems.vue'),
      },
      {
        path: 'audit',
        name: 'audit',
        component: () => import('./views/Audit.vue'),
        meta: { admin: true },
      },
      {
        path: 'backups',
        name: 'backups',
        component: () => import('./views/Backups.vue'),
        meta: { admin: true },
      },
      {
        path: 'commands',
        name: 'commands',
        component: () => import('./views/Commands.vue'),
        meta: { admin: true },
      },
      {
        path: 'terminal/:node',
        name: 'terminal',
        component: () => import('./views/Terminal.vue'),
        meta: { admin: true },
      },
      {
        path: 'recordings/:id',
        name: 'replay',
        component: () => import('./views/Replay.vue'),
        meta: { admin: true },
      },
      { path: 'users', name: 'users', component: () => import('./views/Users.vue') },
      {
        path: 'settings',
        name: 'settings',
        component: () => import('./views/Settings.vue'),
      },
    ],
  },
  { path: '/:rest(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory(), routes })

let checked = false

router.beforeEach(async (to) => {
  if (!store.user && !checked) {
    checked = true
    // Fetch the page's code while the session is checked, not after.
    for (const record of to.matched) {
      const load = record.components && record.components.default
      if (typeof load === 'function') load().catch(() => {})
    }
    try {
      await me()
    } catch {
      // the master is unreachable: the login form will say so when it is used
    }
  }
  // A generated first password must be changed first: the login page asks for a new one.
  const ready = store.user && !store.user.must_change_password
  if (to.name === 'login') return ready ? { path: to.query.redirect || '/' } : true
  if (!ready) return { name: 'login', query: { redirect: to.fullPath } }
  if (to.meta.admin && store.user.role !== 'admin') {
    refused(to)
    return { name: 'dashboard' }
  }
  return true
})

// Someone sent away from an admin-only page (a link, a bookmark) is told why.
function refused(to) {
  const { t } = i18n.global
  ElMessage.warning({
    message: t('errors.admin_only', {
      page: t(`nav.${String(to.name)}`),
      role: t(`roles.${store.user.role}`),
    }),
    customClass: 'refused-message',
    duration: 8000,
    showClose: true,
    grouping: true,
  })
}

// After a logout the next navigation checks the session again.
export function resetSessionCheck() {
  checked = false
}
