; C tags: definitions and references (for chunking and the symbol map).

(function_definition
  declarator: [
    (function_declarator
      declarator: (_) @name.definition.function)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (_) @name.definition.function))
    (pointer_declarator
      declarator: (pointer_declarator
        declarator: (function_declarator
          declarator: (_) @name.definition.function)))
  ]) @definition.function

(struct_specifier
  name: (type_identifier) @name.definition.struct
  body: (field_declaration_list)) @definition.struct

(union_specifier
  name: (type_identifier) @name.definition.union
  body: (field_declaration_list)) @definition.union

(enum_specifier
  name: (type_identifier) @name.definition.enum
  body: (enumerator_list)) @definition.enum

(type_definition
  declarator: (type_identifier) @name.definition.type) @definition.type

(preproc_function_def
  name: (identifier) @name.definition.macro) @definition.macro

(declaration
  declarator: (function_declarator
    declarator: (identifier) @name.definition.declaration)) @definition.declaration

(call_expression
  function: [
    (identifier) @name.reference.call
    (field_expression
      field: (field_identifier) @name.reference.call)
  ]) @reference.call

(preproc_include
  path: (_) @name.reference.import) @reference.import
