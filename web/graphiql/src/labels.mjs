// The workbench is Chinese first: GraphiQL's own labels (it has no translations) are replaced, at
// build time, by Chinese ones with the English after them, as the workbench's own are written
// ("示例查询 Examples"). Each entry is an exact piece of a file GraphiQL ships, what it becomes, and
// how many times it stands there; build.mjs fails when one is not found exactly so (a GraphiQL
// upgrade that moved a label must update this table, never drop a translation quietly).
// Plugin titles are names too: the sidebar's "Show …" label and the doc explorer's Ctrl-Alt-K
// selector are translated with them, and the section icons are looked up by the English title.

const SECTIONS = {
  Arguments: '参数 Arguments',
  'Deprecated Arguments': '已弃用的参数 Deprecated arguments',
  'Deprecated Enum Values': '已弃用的枚举值 Deprecated enum values',
  'Deprecated Fields': '已弃用的字段 Deprecated fields',
  Directives: '指令 Directives',
  'Enum Values': '枚举值 Enum values',
  Fields: '字段 Fields',
  Implements: '实现的接口 Implements',
  Implementations: '实现 Implementations',
  'Possible Types': '可能的类型 Possible types',
  'Root Types': '根类型 Root types',
  Type: '类型 Type',
  'All Schema Types': '全部类型 All schema types',
};

export const LABELS = {
  'graphiql/dist/GraphiQL.js': [
    ['newTab: "New tab"', 'newTab: "新建标签页 New tab"'],
    [
      '`${editorToolsHiddenElement === "second" ? "Show" : "Hide"} editor tools`',
      'editorToolsHiddenElement === "second" ? "显示变量与请求头 Show editor tools" : "隐藏变量与请求头 Hide editor tools"',
    ],
    ['"data-name": "variables", children: "Variables"', '"data-name": "variables", children: "变量 Variables"'],
    ['"data-name": "headers", children: "Headers"', '"data-name": "headers", children: "请求头 Headers"'],
    [
      'activeSecondaryEditor === "variables" ? "Variables" : "Headers"',
      'activeSecondaryEditor === "variables" ? "变量 Variables" : "请求头 Headers"',
    ],
    ['"aria-label": "Editor Commands"', '"aria-label": "编辑器命令 Editor commands"'],
    ['"aria-label": "Operation Editor"', '"aria-label": "查询编辑器 Operation editor"'],
    ['"aria-label": "Select active operation"', '"aria-label": "选择标签页 Select active operation"'],
  ],
  'graphiql/dist/ui/sidebar.js': [
    ['`Re-fetch GraphQL schema (', '`重新获取 schema Re-fetch GraphQL schema ('],
    ['"Open short keys dialog"', '"快捷键 Open short keys dialog"'],
    ['"Open settings dialog"', '"设置 Open settings dialog"'],
    ['`${isVisible_0 ? "Hide" : "Show"} ${plugin_0.title}`', '`${isVisible_0 ? "隐藏" : "显示"} ${plugin_0.title}`'],
    ['children: "Short Keys"', 'children: "快捷键 Short keys"'],
    ['children: "Settings"', 'children: "设置 Settings"'],
    ['children: "Persist headers"', 'children: "保存请求头 Persist headers"'],
    ['"Save headers upon reloading."', '"重新加载页面后保留请求头。"'],
    ['children: "Only enable if you trust this device."', 'children: "仅在可信设备上开启。"'],
    ['children: "On"', 'children: "开 On"'],
    ['children: "Off"', 'children: "关 Off"'],
    ['children: "Theme"', 'children: "主题 Theme"'],
    ['children: "Adjust how the interface appears."', 'children: "调整界面外观。"'],
    ['children: "System"', 'children: "跟随系统 System"'],
    ['children: "Light"', 'children: "浅色 Light"'],
    ['children: "Dark"', 'children: "深色 Dark"'],
    ['children: "Clear storage"', 'children: "清除本地数据 Clear storage"'],
    [
      'children: "Remove all locally stored data and start fresh."',
      'children: "删除本页保存在浏览器中的全部数据，重新开始。"',
    ],
    ['success: "Cleared data"', 'success: "已清除 Cleared"'],
    ['error: "Failed"', 'error: "失败 Failed"'],
    ['|| "Clear data"', '|| "清除 Clear data"'],
  ],
  'graphiql/dist/ui/toolbar.js': [
    ['label: `Prettify query (', 'label: `格式化 Prettify query ('],
    ['label: `Merge fragments into query (', 'label: `合并片段 Merge fragments into query ('],
    ['label: `Copy query (', 'label: `复制查询 Copy query ('],
  ],
  'graphiql/dist/ui/short-keys.js': [
    ['"Execute query":', '"执行查询 Execute query":'],
    [
      '"Open the Command Palette (you must have focus in the editor)":',
      '"打开命令面板（光标须在编辑器中） Open the Command Palette":',
    ],
    ['"Prettify editors":', '"格式化 Prettify editors":'],
    ['"Copy query":', '"复制查询 Copy query":'],
    ['"Re-fetch schema using introspection":', '"重新获取 schema Re-fetch schema":'],
    ['"Search in documentation":', '"在文档中搜索 Search in documentation":'],
    ['"Search in editor":', '"在编辑器中搜索 Search in editor":'],
    [
      '"Merge fragments definitions into operation definition":',
      '"合并片段 Merge fragments into the operation":',
    ],
    ['children: "Short Key"', 'children: "快捷键 Short key"'],
    ['children: "Function"', 'children: "功能 Function"'],
  ],
  '@graphiql/react/dist/components/execute-button/index.js': [
    ['`${isRunning ? "Stop" : "Execute"} query (', '`${isRunning ? "停止 Stop query" : "执行查询 Execute query"} ('],
  ],
  '@graphiql/react/dist/components/tabs/index.js': [['"aria-label": "Close Tab"', '"aria-label": "关闭标签页 Close tab"']],
  '@graphiql/react/dist/components/dialog/index.js': [['children: "Close dialog"', 'children: "关闭 Close dialog"']],
  '@graphiql/react/dist/components/response-editor.js': [['= "Result Window"', '= "查询结果 Result window"']],
  '@graphiql/plugin-doc-explorer/dist/context.js': [
    ['title: "Documentation Explorer"', 'title: "文档 Documentation explorer"'],
    ['name: "Docs"', 'name: "文档 Docs"'],
    ['aria-label="Show Documentation Explorer"', 'aria-label="显示 文档 Documentation explorer"'],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/doc-explorer.js': [
    ['children: "Error fetching schema"', 'children: "schema 获取失败 Error fetching schema"'],
    ['children: "No GraphQL schema available"', 'children: "没有可用的 schema No GraphQL schema available"'],
    ['"aria-label": `Go back to ${prevName}`', '"aria-label": `返回 Go back to ${prevName}`'],
    ['"aria-label": "Documentation Explorer"', '"aria-label": "文档 Documentation explorer"'],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/search.js': [
    ['`Search ${navItem.name}...`', '`搜索 Search ${navItem.name}…`'],
    ['children: "No results found"', 'children: "没有结果 No results found"'],
    ['children: "Other results"', 'children: "其他结果 Other results"'],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/section.js': [
    ['      t1,\n      title\n', `      t1,\n      (${JSON.stringify(SECTIONS)})[title] ?? title\n`],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/field-documentation.js': [
    ['children: "Show Deprecated Arguments"', 'children: "显示已弃用的参数 Show deprecated arguments"'],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/type-documentation.js': [
    ['children: "Show Deprecated Fields"', 'children: "显示已弃用的字段 Show deprecated fields"'],
    ['children: "Show Deprecated Values"', 'children: "显示已弃用的枚举值 Show deprecated values"'],
  ],
  '@graphiql/plugin-doc-explorer/dist/components/argument.js': [['children: "Deprecated"', 'children: "已弃用 Deprecated"']],
  '@graphiql/plugin-doc-explorer/dist/components/deprecation-reason.js': [
    ['children: "Deprecated"', 'children: "已弃用 Deprecated"'],
  ],
  '@graphiql/plugin-history/dist/index.js': [['title: "History"', 'title: "历史 History"']],
  '@graphiql/plugin-history/dist/components.js': [
    ['const t2 = "History";', 'const t2 = "历史 History";'],
    ['      "History",\n', '      "历史 History",\n'],
    ['success: "Cleared"', 'success: "已清除 Cleared"'],
    ['error: "Failed to Clear"', 'error: "清除失败 Failed to clear"'],
    ['|| "Clear" })', '|| "清除 Clear" })'],
    ['placeholder: "Type a label"', 'placeholder: "输入名称 Type a label"'],
    ['children: "Save"', 'children: "保存 Save"'],
    ['"Set active"', '"设为当前 Set active"', 2],
    ['"Edit label"', '"改名 Edit label"', 2],
    ['"Remove favorite"', '"取消收藏 Remove favorite"', 2],
    ['"Add favorite"', '"收藏 Add favorite"', 2],
    ['"Delete from history"', '"从历史中删除 Delete from history"', 2],
  ],
};
