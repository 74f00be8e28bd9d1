// ESLint (flat config): JavaScript's recommended rules, eslint-plugin-vue's recommended rules
// for the single-file components, and no layout rules (Prettier formats; see .prettierrc.json).
// `npm run lint` (and `nox -s lint`) runs it with Prettier's check.
import js from '@eslint/js'
import prettier from 'eslint-config-prettier/flat'
import vue from 'eslint-plugin-vue'
import globals from 'globals'

// Text a template may show as is: it reads the same in every language (units, symbols,
// product and protocol names). Everything else comes from the locale files (src/locales/).
const SAME_IN_EVERY_LANGUAGE = [
  'GDOS',
  'CPU',
  'PID',
  'URL',
  'JSON',
  '@',
  '%',
  '·',
  '—',
  '/',
  '=',
  ':',
  '(',
  ')',
  '…',
  '.cast',
  'SHA-256',
]

export default [
  { ignores: ['node_modules/', 'public/'] },
  js.configs.recommended,
  ...vue.configs['flat/recommended'],
  {
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module', globals: globals.browser },
  },
  {
    files: ['*.config.js'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['src/**/*.vue'],
    rules: {
      // Views are named after their route (Nodes, Audit ...), not multi-word.
      'vue/multi-word-component-names': 'off',
      // User-visible text in templates goes through t(): no bare strings.
      'vue/no-bare-strings-in-template': [
        'error',
        {
          allowlist: SAME_IN_EVERY_LANGUAGE,
          attributes: {
            '/.+/': [
              'title',
              'aria-label',
              'aria-placeholder',
              'aria-roledescription',
              'aria-valuetext',
              'placeholder',
              'label',
              'description',
              'content',
              'empty-text',
              'active-text',
              'inactive-text',
            ],
            img: ['alt'],
          },
          directives: ['v-text'],
        },
      ],
    },
  },
  prettier,
]
