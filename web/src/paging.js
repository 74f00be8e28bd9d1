// A list the server filters and pages (audit log, alert history): the filters, the page
// being shown, and the calls the filter bar (FilterBar.vue) and pager (ListPager.vue) make.
import { reactive, ref } from 'vue'

/**
 * blank() gives the filters' empty values (`range` is the time range: [since, until] or null);
 * fetch(filters, bounds) asks the server for one page, bounds carrying since, until, limit
 * and offset, and resolves to { items, total }.
 */
export function usePagedList({ blank, fetch, size = 20 }) {
  const filters = reactive(blank())
  const page = reactive({ size, current: 1, total: 0 })
  const items = ref([])
  const loading = ref(false)

  async function load() {
    loading.value = true
    try {
      const [since, until] = filters.range || []
      const result = await fetch(filters, {
        since: since ? since.toISOString() : undefined,
        until: until ? until.toISOString() : undefined,
        limit: page.size,
        offset: (page.current - 1) * page.size,
      })
      items.value = result.items
      page.total = result.total
    } finally {
      loading.value = false
    }
  }

  function search() {
    page.current = 1
    load()
  }

  function reset() {
    Object.assign(filters, blank())
    search()
  }

  // The pager's changes: another page reloads, another page size starts over at the first.
  function turnTo(current) {
    page.current = current
    load()
  }

  function resize(newSize) {
    page.size = newSize
    search()
  }

  return { filters, page, items, loading, load, search, reset, turnTo, resize }
}
